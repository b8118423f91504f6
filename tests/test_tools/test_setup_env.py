"""tools/setup_env.sh and tools/misc/check_env.py: which torch it installs, how mmcv is built
(or why not, before any building), the final check of mmcv's ops; and which Python the
shell tools run.

setup_env.sh is run against a fake venv: its python runs the real interpreter with a fake
torch first on the path, and its pip only records what it was asked to install (and
"installs" torch as a fake of the build it would have got). Nothing is downloaded or
built, and the repository's .venv is not touched.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from .tool_helpers import REPO, load_tool

check_env = load_tool('tools/misc/check_env.py')
TorchBuild = check_env.TorchBuild
CHECK_ENV = osp.join(REPO, 'tools', 'misc', 'check_env.py')
SETUP_ENV = osp.join(REPO, 'tools', 'setup_env.sh')
CPU_INDEX = 'https://download.pytorch.org/whl/cpu'
PY_TAG = f'py{sys.version_info.major}{sys.version_info.minor}'

CPU = TorchBuild('2.13.0+cpu', None, ())
CUDA = TorchBuild('2.13.0+cu126', '12.6', ((9, 0), (8, 0), (9, 0)))
CUDA_NO_GPU = TorchBuild('2.13.0+cu126', '12.6', ())

FAKE_TORCH = '''\
__version__ = {version!r}


class version:
    cuda = {cuda!r}


class cuda:
    @staticmethod
    def is_available():
        return {available!r}

    @staticmethod
    def device_count():
        return {count!r}

    @staticmethod
    def get_device_capability(i=0):
        return {capabilities!r}[i]
'''


def fake_torch_source(build):
    return FAKE_TORCH.format(version=build.version, cuda=build.cuda,
                             available=bool(build.capabilities),
                             count=len(build.capabilities),
                             capabilities=list(build.capabilities))


def write_fake_torch(site, build):
    os.makedirs(osp.join(site, 'torch'), exist_ok=True)
    with open(osp.join(site, 'torch', '__init__.py'), 'w') as f:
        f.write(fake_torch_source(build))


def executable(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def toolkit(root, release):
    """A CUDA toolkit folder whose nvcc says it is CUDA ``release``."""
    executable(root / 'bin' / 'nvcc', '#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler '
               f'driver"\necho "Cuda compilation tools, release {release}, V{release}.77"\n')
    (root / 'include').mkdir(exist_ok=True)
    (root / 'include' / 'cuda_runtime_api.h').write_text('')
    return str(root)


# ---------------------------------------------------------------- the build decision

def test_a_cpu_torch_gets_the_cpu_build_and_needs_no_cuda_toolkit(tmp_path):
    no_toolkit = dict(CUDA_HOME=str(tmp_path), PATH='')
    for choice, torch_build in [('cpu', CPU), ('existing', CPU),
                                ('existing', CUDA_NO_GPU)]:  # a CUDA torch that sees no GPU
        plan = check_env.plan_build(choice, torch_build, no_toolkit)
        assert plan['FORCE_CUDA'] == '0' and plan['MMCV_BUILD_DEVICE'] == 'cpu', choice
        assert 'TORCH_CUDA_ARCH_LIST' not in plan
        assert plan['MMCV_BUILD_KEY'] == f'torch{torch_build.version}-{PY_TAG}-cpu'


def test_cuda_kernels_with_a_matching_toolkit(tmp_path):
    home = toolkit(tmp_path / 'cuda-12.6', '12.6')
    plan = check_env.plan_build('cuda', CUDA, dict(CUDA_HOME=home))
    # The architectures of the visible GPUs, each once.
    assert (plan['FORCE_CUDA'], plan['TORCH_CUDA_ARCH_LIST'], plan['CUDA_HOME']) == \
        ('1', '8.0;9.0', home)
    assert plan['MMCV_BUILD_KEY'] == f'torch2.13.0+cu126-{PY_TAG}-cuda8.0_9.0'
    # A list that is set wins; it also builds where torch sees no GPU.
    plan = check_env.plan_build('cuda:cu126', CUDA_NO_GPU,
                                dict(CUDA_HOME=home, TORCH_CUDA_ARCH_LIST='7.5'))
    assert plan['TORCH_CUDA_ARCH_LIST'] == '7.5'
    # Without CUDA_HOME, the toolkit is the folder above the nvcc on PATH (as for torch).
    plan = check_env.plan_build('existing', CUDA, dict(PATH=osp.join(home, 'bin')))
    assert (plan['FORCE_CUDA'], plan['CUDA_HOME']) == ('1', home)


@pytest.mark.parametrize('case', ['no nvcc', 'another CUDA', 'no nvcc and no GPU'])
def test_cuda_kernels_that_cannot_be_built_stop_with_one_line(tmp_path, case):
    torch_build, home = CUDA, str(tmp_path / 'empty')
    problems = [f'nvcc, the CUDA compiler, is missing: no {home}/bin/nvcc (CUDA_HOME={home})']
    if case == 'another CUDA':
        home = toolkit(tmp_path / 'cuda-12.4', '12.4')
        problems = [f'{home}/bin/nvcc is CUDA 12.4, torch is built with CUDA 12.6 (their '
                    f'major.minor must match)']
    if case == 'no nvcc and no GPU':
        torch_build = CUDA_NO_GPU
        problems.append('torch sees no GPU to take the kernel architectures from')
    with pytest.raises(check_env.EnvCheckError) as info:
        check_env.plan_build('cuda', torch_build, dict(CUDA_HOME=home, PATH=''))
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith("cannot build mmcv's CUDA kernels for torch 2.13.0+cu126 (CUDA "
                              "12.6 build): " + '; '.join(problems) + '. To proceed: ')
    assert 'install the CUDA toolkit 12.6 and set CUDA_HOME to it' in message
    assert message.endswith('or choose the CPU build: bash tools/setup_env.sh --torch cpu')
    assert ('set TORCH_CUDA_ARCH_LIST' in message) == (case == 'no nvcc and no GPU')


def test_a_cuda_choice_with_a_cpu_torch_is_refused():
    with pytest.raises(check_env.EnvCheckError, match=r'CUDA kernels need a CUDA build of '
                       r'torch, found torch 2.13.0\+cpu \(CPU build\)'):
        check_env.plan_build('cuda', CPU, {})
    with pytest.raises(check_env.EnvCheckError, match=r'--torch cpu installed torch '
                       r'2.13.0\+cu126 \(CUDA 12.6 build\)'):
        check_env.check_torch('cpu', CUDA)
    with pytest.raises(check_env.EnvCheckError, match='not the CUDA 12.8 build'):
        check_env.check_torch('cuda:cu128', CUDA)
    assert check_env.check_torch('cuda:cu126', CUDA) == 'torch 2.13.0+cu126 (CUDA 12.6 build)'
    assert check_env.check_torch('existing', CPU) == 'torch 2.13.0+cpu (CPU build)'
    assert check_env.parse_choice('cuda:cu118') == ('cuda', '11.8')
    with pytest.raises(check_env.EnvCheckError, match="got 'gpu'"):
        check_env.parse_choice('gpu')


def run_check_env(tmp_path, *args, torch_build=CUDA, **environ):
    """check_env.py in a subprocess that imports a fake ``torch_build``."""
    site = tmp_path / 'fake_site'
    write_fake_torch(site, torch_build)
    env = {**os.environ, 'PYTHONPATH': str(site), 'PATH': '', **environ}
    env.pop('TORCH_CUDA_ARCH_LIST', None)
    proc = subprocess.run([sys.executable, CHECK_ENV, *args], capture_output=True,
                          text=True, env=env, timeout=60)
    return proc.returncode, proc.stdout, proc.stderr


def test_the_build_step_prints_the_exports_or_one_error(tmp_path):
    rc, out, err = run_check_env(tmp_path, 'build', '--torch', 'cuda',
                                 CUDA_HOME=str(tmp_path / 'none'))
    assert (rc, out) == (1, '')
    assert len(err.splitlines()) == 1 and err.startswith(
        "ERROR: cannot build mmcv's CUDA kernels for torch 2.13.0+cu126")
    home = toolkit(tmp_path / 'cuda', '12.6')
    rc, out, err = run_check_env(tmp_path, 'build', '--torch', 'cuda', CUDA_HOME=home)
    assert rc == 0, err
    assert f"export FORCE_CUDA=1\nexport TORCH_CUDA_ARCH_LIST='8.0;9.0'\n" \
           f'export CUDA_HOME={home}\n' in out


# ----------------------------------------------------- setup_env.sh with a fake venv

FAKE_PIP = '''\
import json, os, sys
args = sys.argv[1:]
with open(os.environ['FAKE_PIP_LOG'], 'a') as f:
    f.write(json.dumps(dict(args=args, FORCE_CUDA=os.environ.get('FORCE_CUDA'),
                            PIP_CACHE_DIR=os.environ.get('PIP_CACHE_DIR'))) + '\\n')
releases = [a[len('torch=='):] for a in args if a.startswith('torch==')]
if args[0] == 'cache':
    print(os.environ['FAKE_PIP_CACHE'])
elif args[0] in ('install', 'download') and 'mmcv==2.1.0' in args:
    sys.exit(97)  # the test follows the script up to mmcv's build
elif args[0] == 'install' and releases:
    index = args[args.index('--index-url') + 1] if '--index-url' in args else None
    # what the configured index resolves to, for the release asked for
    served = os.environ['FAKE_INDEX_TORCH'].replace('2.13.0', releases[0])
    if '--dry-run' in args:
        with open(args[args.index('--report') + 1], 'w') as f:
            json.dump(dict(install=[dict(metadata=dict(version=served))]), f)
        sys.exit(0)
    version = served if index is None else releases[0] + '+' + index.rsplit('/', 1)[1]
    cuda = None if version.endswith('+cpu') else (
        os.environ['FAKE_INDEX_CUDA'] if index is None else
        '{}.{}'.format(version[-3:-1], version[-1]))
    os.makedirs(os.path.join(os.environ['FAKE_SITE'], 'torch'), exist_ok=True)
    with open(os.path.join(os.environ['FAKE_SITE'], 'torch', '__init__.py'), 'w') as f:
        f.write(FAKE_TORCH.format(version=version, cuda=cuda, available=False, count=0,
                                  capabilities=[]))
'''


@pytest.fixture
def fake_venv(tmp_path):
    """(venv folder, environment for setup_env.sh, read the pip log)."""
    venv, site = tmp_path / 'venv', tmp_path / 'site'
    # No torch until a test writes a fake one (or the fake pip installs one).
    executable(site / 'torch' / '__init__.py', "raise ImportError('no torch here')\n")
    pip = tmp_path / 'fake_pip.py'
    pip.write_text(f'FAKE_TORCH = {FAKE_TORCH!r}\n' + FAKE_PIP)
    executable(venv / 'bin' / 'python', f'''#!/usr/bin/env bash
if [[ "$1" == -m && "$2" == pip ]]; then shift 2; exec "{sys.executable}" "{pip}" "$@"; fi
PYTHONPATH="{site}" exec "{sys.executable}" "$@"
''')
    log = tmp_path / 'pip.log'
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('MMPOOLFORMER_', 'CUDA_', 'TORCH_CUDA', 'FORCE_', 'PIP_'))}
    env.update(MMPOOLFORMER_VENV=str(venv), FAKE_PIP_LOG=str(log), FAKE_SITE=str(site),
               FAKE_PIP_CACHE=str(tmp_path / 'pipcache'), CUDA_HOME=str(tmp_path / 'none'),
               FAKE_INDEX_TORCH='2.13.0+cpu', FAKE_INDEX_CUDA='12.8')

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return venv, site, env, calls


def setup_env(env, *args):
    proc = subprocess.run(['bash', SETUP_ENV, *args], capture_output=True, text=True, env=env,
                          timeout=120)
    return proc.returncode, proc.stdout, proc.stderr


def torch_installs(calls):
    return [c['args'] for c in calls() if c['args'][0] == 'install'
            and any(a.startswith('torch==') for a in c['args'])
            and '--dry-run' not in c['args']]


def mmcv_installs(calls):
    return [c for c in calls() if c['args'][0] in ('install', 'download')
            and 'mmcv==2.1.0' in c['args']]


def test_setup_env_stops_before_building_when_cuda_kernels_cannot_be_built(fake_venv):
    venv, site, env, calls = fake_venv
    write_fake_torch(site, CUDA)  # a CUDA torch that sees GPUs; no CUDA toolkit anywhere
    rc, out, err = setup_env(env, '--torch', 'cuda')
    assert rc == 1, out + err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(
        "ERROR: cannot build mmcv's CUDA kernels for torch 2.13.0+cu126 (CUDA 12.6 build): "
        'nvcc, the CUDA compiler, is missing'), err
    assert '[setup_env] torch 2.13.0+cu126 (CUDA 12.6 build)' in out
    assert mmcv_installs(calls) == [] and torch_installs(calls) == []
    assert not (venv / '.mmpoolformer-installed').exists()


@pytest.mark.parametrize('choice,served,index,installed', [
    # The configured index serves the CPU build: it is used, nothing else is reached.
    ('cpu', '2.13.0+cpu', None, 'torch 2.13.0+cpu (CPU build)'),
    # It serves the CUDA build (PyPI on Linux): the CPU one comes from PyTorch's CPU index.
    ('cpu', '2.13.0', CPU_INDEX, 'torch 2.13.0+cpu (CPU build)'),
    ('cuda', '2.13.0', None, 'torch 2.13.0 (CUDA 12.8 build)'),
    ('cuda:cu126', '2.13.0+cpu', 'https://download.pytorch.org/whl/cu126',
     'torch 2.13.0+cu126 (CUDA 12.6 build)'),
])
def test_setup_env_installs_the_chosen_torch_build(fake_venv, tmp_path, choice, served, index,
                                                   installed):
    venv, _, env, calls = fake_venv
    # The toolkit of the chosen CUDA; the fake torch sees no GPU, so the list is needed.
    cuda = '12.6' if choice == 'cuda:cu126' else '12.8'
    env.update(FAKE_INDEX_TORCH=served, CUDA_HOME=toolkit(tmp_path / 'cuda', cuda),
               TORCH_CUDA_ARCH_LIST='9.0')
    rc, out, err = setup_env(env, '--torch', choice)
    assert f'[setup_env] {installed}\n' in out, out + err
    [args] = torch_installs(calls)
    assert (args[args.index('--index-url') + 1] if '--index-url' in args else None) == index
    assert (venv / '.mmpoolformer-torch').read_text().strip() == choice
    # Up to mmcv's build (where the fake pip stops the script), with the matching settings.
    assert rc == 97, out + err
    [mmcv] = mmcv_installs(calls)
    assert '--no-build-isolation' in mmcv['args']
    assert mmcv['FORCE_CUDA'] == ('0' if choice == 'cpu' else '1')
    key = check_env.cache_key(f"torch{installed.split()[1]}-{PY_TAG}-"
                              f"{'cpu' if choice == 'cpu' else 'cuda'}")
    assert osp.basename(mmcv['PIP_CACHE_DIR']).startswith(f'mmcv-{key}')


def test_setup_env_takes_an_index_url_and_keeps_a_venvs_choice(fake_venv):
    venv, _, env, calls = fake_venv
    env.update(FAKE_INDEX_TORCH='2.13.0', MMPOOLFORMER_TORCH_INDEX='https://mirror/whl/cpu')
    rc, out, err = setup_env(env)  # the default is the CPU build
    assert rc == 97 and '[setup_env] torch 2.13.0+cpu (CPU build)\n' in out, out + err
    assert torch_installs(calls)[0][-3:] == ['--index-url', 'https://mirror/whl/cpu',
                                             'torch==2.13.0']
    # A later run without --torch keeps the venv's choice.
    (venv / '.mmpoolformer-torch').write_text('existing\n')
    del env['MMPOOLFORMER_TORCH_INDEX']
    rc, out, err = setup_env(env)
    assert rc == 97 and len(torch_installs(calls)) == 1, out + err


def test_setup_env_existing_needs_an_importable_torch(fake_venv):
    _, _, env, calls = fake_venv
    rc, out, err = setup_env(env, '--torch', 'existing')
    assert rc == 1 and err.startswith('ERROR: --torch existing: ') and 'cannot import torch' \
        in err, out + err
    assert torch_installs(calls) == [] and mmcv_installs(calls) == []


@pytest.mark.parametrize('args', [['--torch', 'gpu'], ['--torch'], ['--cuda']])
def test_setup_env_refuses_a_bad_option_before_doing_anything(fake_venv, args):
    venv, _, env, calls = fake_venv
    rc, out, err = setup_env(env, *args)
    assert rc == 2 and out == '' and len(err.splitlines()) == 1 and err.startswith('ERROR: ')
    assert not (venv.parent / 'pip.log').exists()


def test_setup_env_installs_a_chosen_release_and_the_venv_keeps_it(fake_venv):
    """--torch-version with --torch index (the configured index's build, here a CUDA build
    on a machine without a GPU): that release, pinned for every later install; mmcv's CPU
    ops; a later run without the options keeps the release."""
    venv, _, env, calls = fake_venv
    env.update(FAKE_INDEX_TORCH='2.13.0')  # PyPI: the CUDA build
    rc, out, err = setup_env(env, '--torch', 'index', '--torch-version', '2.1.2')
    assert rc == 97, out + err
    assert '[setup_env] torch 2.1.2 (CUDA 12.8 build)\n' in out
    [args] = torch_installs(calls)
    assert args[-1] == 'torch==2.1.2' and '--index-url' not in args
    assert (venv / '.mmpoolformer-pins.txt').read_text() == 'torch==2.1.2\nnumpy<2\n'
    installs = [c['args'] for c in calls() if c['args'][0] == 'install']
    assert all(str(venv / '.mmpoolformer-pins.txt') in args for args in installs)
    [mmcv] = mmcv_installs(calls)
    assert mmcv['FORCE_CUDA'] == '0'  # the torch sees no GPU
    rc, out, err = setup_env(env, '--numpy', '2')
    assert rc == 97 and len(torch_installs(calls)) == 1, out + err  # 2.1.2 is installed
    assert (venv / '.mmpoolformer-pins.txt').read_text() == 'torch==2.1.2\nnumpy>=2,<3\n'


@pytest.mark.parametrize('args,needle', [
    (['--torch-version', '2.0.1'], '--torch-version 2.0.1 is outside the torch releases '
                                   'mmpoolformer supports: 2.1 to 2.14.x'),
    (['--torch-version', '2.15.0'], 'outside the torch releases'),
    (['--torch-version', 'latest'], "takes a release such as 2.1.2, got 'latest'"),
    (['--numpy', '3'], "--numpy must be 1 or 2, got '3'"),
    (['--python', '3.99'], '--python 3.99: no python3.99 on PATH and none under pyenv'),
    (['--python', 'py39'], "--python takes a version such as 3.9, got 'py39'"),
])
def test_setup_env_refuses_what_it_cannot_install_before_doing_anything(fake_venv, args,
                                                                         needle):
    venv, _, env, _ = fake_venv
    rc, out, err = setup_env(env, *args)
    assert rc == 2 and out == '' and len(err.splitlines()) == 1, out + err
    assert err.startswith('ERROR: ') and needle in err, err
    assert not (venv.parent / 'pip.log').exists()


def test_setup_env_refuses_another_python_for_an_existing_venv(fake_venv):
    venv, _, env, _ = fake_venv
    other = '3.8' if sys.version_info[:2] != (3, 8) else '3.9'
    bin_dir = venv.parent / 'bin'
    executable(bin_dir / f'python{other}', f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    env['PATH'] = f'{bin_dir}:{env["PATH"]}'
    rc, out, err = setup_env(env, '--python', other)  # the fake venv runs this Python
    has = '%d.%d' % sys.version_info[:2]
    assert rc == 2 and err.startswith(f'ERROR: --python {other}: {venv} has Python {has}; '
                                      f'remove it or set MMPOOLFORMER_VENV'), out + err


def test_a_torch_whose_headers_require_cpp20_gets_mmcv_built_with_it(fake_venv):
    venv, site, env, calls = fake_venv
    write_fake_torch(site, CUDA_NO_GPU)
    (site / 'torch' / 'include' / 'ATen').mkdir(parents=True)
    (site / 'torch' / 'include' / 'ATen' / 'ATen.h').write_text(
        '#if !defined(_MSC_VER) && __cplusplus < 202002L\n'
        '#error C++20 or later compatible compiler is required to use ATen.\n#endif\n')
    rc, out, err = setup_env(env, '--torch', 'existing')
    assert rc == 97, out + err
    assert 'from its source archive with -std=c++20 in place of -std=c++17' in out
    [download] = mmcv_installs(calls)
    assert download['args'][0] == 'download' and '--no-binary' in download['args']
    assert check_env.cxx_standard(str(site / 'torch' / 'include')) == 'c++20'
    assert check_env.cxx_standard(str(site / 'nowhere')) == 'c++17'
    from mmpoolformer.compat import torch_version
    assert check_env.cxx_standard(check_env.torch_include_dir()) == (
        'c++20' if torch_version() >= (2, 14) else 'c++17')


# ------------------------------------------------------------ the check of mmcv's ops

def test_mmcv_ops_give_the_known_answers_on_every_device():
    import torch
    expected = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    assert check_env.check_ops('existing', environ={}) == expected


@pytest.mark.parametrize('op,wrong,message', [
    ('nms', lambda boxes, scores, iou: (None, __import__('torch').tensor([0])),
     r'mmcv NMS on cpu kept boxes \[0\], expected \[0, 2\]'),
    ('roi_align', lambda feature, rois, *args: feature[:, :, :2, :2],
     r'mmcv RoIAlign on cpu gave \[0.0, 1.0, 4.0, 5.0\], expected \[2.5, 4.5, 10.5, 12.5\]'),
])
def test_wrong_ops_fail_the_check(monkeypatch, op, wrong, message):
    import mmcv.ops
    monkeypatch.setattr(mmcv.ops, op, wrong)
    with pytest.raises(check_env.EnvCheckError, match=message):
        check_env.run_ops('cpu')


@pytest.mark.parametrize('torch_build,devices', [(CPU, ['cpu']), (CUDA_NO_GPU, ['cpu']),
                                                  (CUDA, ['cpu', 'cuda'])])
def test_the_ops_run_on_the_cpu_and_on_a_gpu_that_torch_sees(monkeypatch, torch_build,
                                                             devices):
    import mmcv.ops
    monkeypatch.setattr(check_env, 'installed_torch', lambda: torch_build)
    monkeypatch.setattr(mmcv.ops, 'get_compiling_cuda_version', lambda: '12.6')
    ran = []
    monkeypatch.setattr(check_env, 'run_ops', ran.append)
    assert check_env.check_ops('existing', environ={}) == devices
    assert ran == devices


@pytest.mark.parametrize('torch_build', [CUDA, CUDA_NO_GPU])
def test_mmcv_without_cuda_kernels_is_named(monkeypatch, torch_build):
    import mmcv.ops
    monkeypatch.setattr(check_env, 'installed_torch', lambda: torch_build)
    monkeypatch.setattr(mmcv.ops, 'get_compiling_cuda_version', lambda: 'not available')
    with pytest.raises(check_env.EnvCheckError, match=r'^mmcv 2.1.0 was built without CUDA '
                       r'ops; rerun with bash tools/setup_env.sh --torch cuda '):
        check_env.check_ops('cuda', environ={})


# ------------------------------------------------------- the shell tools' interpreter

TOOLS = {
    'dist_train.sh': ['cfg.py', '2'],
    'dist_test.sh': ['cfg.py', 'ckpt.pth', '2'],
    'slurm_train.sh': ['partition', 'job', 'cfg.py', 'work'],
    'slurm_test.sh': ['partition', 'job', 'cfg.py', 'ckpt.pth'],
    'device_check.sh': ['--device', 'cpu', '--quick'],
}


@pytest.mark.parametrize('tool', list(TOOLS))
def test_shell_tools_run_python_then_the_venv_then_python_on_path(tmp_path, tool):
    repo = tmp_path / 'repo'
    for name in (tool, '_python.sh'):
        executable(repo / 'tools' / name, open(osp.join(REPO, 'tools', name)).read())
    log = tmp_path / 'calls.log'
    record = f'#!/bin/sh\necho "$0" >> "{log}"\n'
    bin_dir = tmp_path / 'bin'  # python on PATH, and srun that runs nothing
    executable(bin_dir / 'python', record)
    executable(bin_dir / 'srun', f'#!/bin/sh\necho "$@" >> "{log}"\n')
    env = {**{k: v for k, v in os.environ.items() if k != 'PYTHON'},
           'PATH': f"{bin_dir}:{os.environ['PATH']}", 'OUT': str(tmp_path / 'logs')}
    if tool == 'slurm_train.sh':
        env['SLURM_JOB_ID'] = '1'  # inside a job: srun (from a login node it submits itself)

    def interpreters(extra=None):
        if log.exists():
            log.unlink()
        subprocess.run(['bash', str(repo / 'tools' / tool), *TOOLS[tool]], env={
            **env, **(extra or {})}, capture_output=True, timeout=60, cwd=tmp_path)
        lines = log.read_text().splitlines()
        return {word for line in lines for word in line.split() if word.endswith('python')}

    # srun gets the bare name, which the compute node resolves.
    on_path = 'python' if tool.startswith('slurm') else str(bin_dir / 'python')
    assert interpreters() == {on_path}
    venv_python = executable(repo / '.venv' / 'bin' / 'python', record)
    assert interpreters() == {str(venv_python)}
    other = executable(tmp_path / 'other' / 'python', record)
    assert interpreters(dict(PYTHON=str(other))) == {str(other)}
