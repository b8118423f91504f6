"""Check the environment around mmcv's compiled ops: before building them and after.

    python tools/misc/check_env.py ops                 # is this environment usable?
    python tools/misc/check_env.py version 2.1.2       # is that torch release supported?
    python tools/misc/check_env.py torch --torch cpu --version 2.13.0
                                                       # is the installed torch that one?
    python tools/misc/check_env.py nvcc --torch cuda:cu126
    python tools/misc/check_env.py build --torch cuda  # how to build mmcv (shell exports)

``tools/setup_env.sh`` runs these steps; ``ops`` is also the check for an environment
that you set up yourself. ``--torch`` takes setup_env.sh's choices: ``cpu``, ``cuda``,
``cuda:cuXYZ`` (e.g. ``cuda:cu126``), ``index`` (whatever build the pip index serves) or
``existing`` (whatever torch is installed); with the last two, CUDA ops are wanted when
torch is a CUDA build that sees a GPU, or when FORCE_CUDA=1.

``build`` decides how mmcv 2.1.0 is compiled: for the CPU, or with its CUDA kernels
(FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST from the visible GPUs unless set, CUDA_HOME of an nvcc
whose CUDA major.minor is torch's), and with which C++ standard (MMCV_CXX_STD: c++17, as
mmcv's setup.py passes it, or c++20 where torch's headers require it). When the CUDA
kernels cannot be built it stops before any compiling with one ``ERROR:`` line that says
what is missing and how to proceed.
``ops`` runs mmcv's NMS and RoIAlign on the CPU, and on CUDA when torch can use it, and
compares them with values worked out by hand. Every failure is one ``ERROR:`` line and exit
status 1. Only the standard library is imported at module level: ``nvcc`` and ``build``
run before mmcv exists.
"""
import argparse
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

SETUP = 'bash tools/setup_env.sh'
CPU_CHOICE = f'{SETUP} --torch cpu'
# torch's own fallback (torch.utils.cpp_extension) when neither CUDA_HOME nor nvcc on PATH
DEFAULT_CUDA_HOME = '/usr/local/cuda'


class EnvCheckError(RuntimeError):
    """A check failed; the message is one line that says what to do."""


class TorchBuild(NamedTuple):
    version: str  # torch.__version__, e.g. '2.13.0+cpu'
    cuda: Optional[str]  # torch.version.cuda: '12.6', or None for a CPU build
    capabilities: Tuple[Tuple[int, int], ...]  # of the GPUs torch sees


def installed_torch() -> TorchBuild:
    try:
        import torch
    except ImportError as exc:
        raise EnvCheckError(f'torch is not importable here ({exc}); install it with '
                            f'{SETUP}') from None
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return TorchBuild(torch.__version__, torch.version.cuda,
                      tuple(tuple(torch.cuda.get_device_capability(i)) for i in range(gpus)))


def parse_choice(choice: str) -> Tuple[str, Optional[str]]:
    """'cpu' -> ('cpu', None); 'cuda:cu126' -> ('cuda', '12.6'); 'index', 'existing',
    'cuda'."""
    if choice in ('cpu', 'cuda', 'index', 'existing'):
        return choice, None
    match = re.fullmatch(r'cuda:cu(\d+)(\d)', choice)
    if match is None:
        raise EnvCheckError(f"--torch must be cpu, cuda, cuda:cuXYZ (e.g. cuda:cu126), index "
                            f"or existing, got '{choice}'")
    return 'cuda', f'{int(match.group(1))}.{match.group(2)}'


def supported_torch() -> Tuple[Tuple[int, int], Tuple[int, int]]:
    """(oldest, newest) supported torch (major, minor), from mmpoolformer/version.py, read
    without importing torch or mmpoolformer."""
    scope = {}
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))),
                    'mmpoolformer', 'version.py')
    with open(path) as f:
        exec(compile(f.read(), path, 'exec'), scope)
    return scope['TORCH_OLDEST'], scope['TORCH_NEWEST']


def check_version(version: str) -> None:
    """A torch release that setup_env.sh may install: X.Y.Z in the supported range."""
    oldest, newest = supported_torch()
    match = re.fullmatch(r'(\d+)\.(\d+)\.(\d+)', version)
    span = f'{oldest[0]}.{oldest[1]} to {newest[0]}.{newest[1]}.x'
    if match is None:
        raise EnvCheckError(f"--torch-version takes a release such as 2.1.2, got '{version}' "
                            f"(supported: {span})")
    if not oldest <= (int(match.group(1)), int(match.group(2))) <= newest:
        raise EnvCheckError(f'--torch-version {version} is outside the torch releases '
                            f'mmpoolformer supports: {span}')


def describe_torch(torch_build: TorchBuild) -> str:
    kind = f'CUDA {torch_build.cuda} build' if torch_build.cuda else 'CPU build'
    return f'torch {torch_build.version} ({kind})'


def check_torch(choice: str, torch_build: TorchBuild, version: Optional[str] = None) -> str:
    """The installed torch is the build ``choice`` asks for (and the release ``version``,
    if given); returns its description."""
    kind, cuda = parse_choice(choice)
    found = describe_torch(torch_build)
    if version is not None and torch_build.version.split('+')[0] != version:
        raise EnvCheckError(f'the installed {found} is not the chosen release {version}')
    if kind == 'cpu' and torch_build.cuda is not None:
        raise EnvCheckError(f'--torch cpu installed {found}; set MMPOOLFORMER_TORCH_INDEX='
                            f'https://download.pytorch.org/whl/cpu (an index that serves the '
                            f'CPU build) and rerun {SETUP} --torch cpu')
    if kind == 'cuda' and torch_build.cuda is None:
        raise EnvCheckError(f'--torch {choice} installed {found}; set MMPOOLFORMER_TORCH_INDEX '
                            f'to an index that serves a CUDA build (e.g. '
                            f'https://download.pytorch.org/whl/cu126, or --torch cuda:cu126) '
                            f'or choose the CPU build: {CPU_CHOICE}')
    if cuda is not None and torch_build.cuda != cuda:
        raise EnvCheckError(f'--torch {choice} installed {found}, not the CUDA {cuda} build; '
                            f'check MMPOOLFORMER_TORCH_INDEX')
    return found


def wants_cuda_ops(choice: str, torch_build: TorchBuild, environ: Dict[str, str]) -> bool:
    """Whether mmcv must have CUDA kernels: asked for, or torch can use a GPU here."""
    kind, _ = parse_choice(choice)
    if kind == 'cuda':
        return True
    if kind in ('index', 'existing'):
        return torch_build.cuda is not None and (
            bool(torch_build.capabilities) or environ.get('FORCE_CUDA') == '1')
    return False


def find_cuda_home(environ: Dict[str, str],
                   default_home: str = DEFAULT_CUDA_HOME) -> Tuple[str, str]:
    """(CUDA_HOME, how it was found), as torch's extension builder finds it.

    torch takes CUDA_HOME (or CUDA_PATH), else the folder above the nvcc on PATH, else
    /usr/local/cuda; mmcv's build then runs that folder's bin/nvcc with its include/.
    """
    for name in ('CUDA_HOME', 'CUDA_PATH'):
        if environ.get(name):
            return environ[name], f'{name}={environ[name]}'
    on_path = shutil.which('nvcc', path=environ.get('PATH', os.defpath))
    if on_path:
        return osp.dirname(osp.dirname(on_path)), f'the nvcc on PATH, {on_path}'
    return default_home, 'no CUDA_HOME and no nvcc on PATH'


def nvcc_cuda_version(nvcc: str) -> Optional[str]:
    """'12.6' from ``nvcc --version`` ('Cuda compilation tools, release 12.6, V12.6.77')."""
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+)\.(\d+)', out)
    return f'{match.group(1)}.{match.group(2)}' if match else None


def nvcc_problem(cuda: Optional[str], environ: Dict[str, str],
                 default_home: str = DEFAULT_CUDA_HOME) -> Tuple[Optional[str], str]:
    """(what is wrong with the CUDA toolkit, or None; CUDA_HOME) for torch's CUDA ``cuda``."""
    home, found_by = find_cuda_home(environ, default_home)
    nvcc = osp.join(home, 'bin', 'nvcc')
    if not os.access(nvcc, os.X_OK):
        return f'nvcc, the CUDA compiler, is missing: no {nvcc} ({found_by})', home
    found = nvcc_cuda_version(nvcc)
    if found is None:
        return f'{nvcc} --version does not say its CUDA release', home
    if cuda is not None and found != cuda:
        return (f'{nvcc} is CUDA {found}, torch is built with CUDA {cuda} (their major.minor '
                f'must match)'), home
    if not osp.isfile(osp.join(home, 'include', 'cuda_runtime_api.h')):
        return (f'{home} ({found_by}) has no include/cuda_runtime_api.h, so it is not a CUDA '
                f'toolkit folder'), home
    return None, home


def toolkit_advice(cuda: Optional[str]) -> str:
    toolkit = (f'the CUDA toolkit {cuda}' if cuda else
               'the CUDA toolkit of the torch build you choose (12.6 for --torch cuda:cu126)')
    return (f'install {toolkit} and set CUDA_HOME to it (nvcc at $CUDA_HOME/bin/nvcc), or '
            f'choose the CPU build: {CPU_CHOICE}')


def check_nvcc(choice: str, environ: Dict[str, str],
               default_home: str = DEFAULT_CUDA_HOME) -> str:
    """Before a CUDA torch is downloaded: an nvcc (of the chosen CUDA, if named) exists."""
    kind, cuda = parse_choice(choice)
    if kind != 'cuda':
        return ''
    problem, home = nvcc_problem(cuda, environ, default_home)
    if problem:
        raise EnvCheckError(f"--torch {choice} needs a CUDA toolkit for mmcv's CUDA kernels: "
                            f'{problem}. To proceed: {toolkit_advice(cuda)}')
    return home


def plan_build(choice: str, torch_build: TorchBuild, environ: Dict[str, str],
               default_home: str = DEFAULT_CUDA_HOME) -> Dict[str, str]:
    """The environment variables for building mmcv 2.1.0's ops against ``torch_build``.

    Raises EnvCheckError, with everything that is missing in one line, when CUDA kernels
    are wanted (see ``wants_cuda_ops``) but cannot be compiled here.
    """
    py = f'py{sys.version_info.major}{sys.version_info.minor}'
    std = dict(MMCV_CXX_STD=cxx_standard(torch_include_dir()))
    if not wants_cuda_ops(choice, torch_build, environ):
        return dict(MMCV_WITH_OPS='1', FORCE_CUDA='0', MMCV_BUILD_DEVICE='cpu',
                    MMCV_BUILD_KEY=cache_key(f'torch{torch_build.version}-{py}-cpu'), **std)
    if torch_build.cuda is None:
        raise EnvCheckError(f'mmcv CUDA kernels need a CUDA build of torch, found '
                            f'{describe_torch(torch_build)}; rerun {SETUP} --torch cuda (or '
                            f'cuda:cu126 etc.), or choose the CPU build: {CPU_CHOICE}')
    problems = []
    problem, home = nvcc_problem(torch_build.cuda, environ, default_home)
    if problem:
        problems.append(problem)
    arch = environ.get('TORCH_CUDA_ARCH_LIST') or ';'.join(
        f'{major}.{minor}' for major, minor in sorted(set(torch_build.capabilities)))
    fixes = [toolkit_advice(torch_build.cuda)]
    if not arch:
        problems.append('torch sees no GPU to take the kernel architectures from')
        fixes.insert(0, "set TORCH_CUDA_ARCH_LIST to your GPUs' compute capabilities "
                        "(e.g. '8.0;9.0')")
    if problems:
        raise EnvCheckError(f"cannot build mmcv's CUDA kernels for "
                            f"{describe_torch(torch_build)}: {'; '.join(problems)}. To "
                            f"proceed: {'; '.join(fixes)}")
    return dict(MMCV_WITH_OPS='1', FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST=arch, CUDA_HOME=home,
                MMCV_BUILD_DEVICE=f'CUDA {torch_build.cuda} (arch {arch}, {home}/bin/nvcc)',
                MMCV_BUILD_KEY=cache_key(f'torch{torch_build.version}-{py}-cuda{arch}'), **std)


def torch_include_dir() -> Optional[str]:
    """The C++ headers of the installed torch (None without torch)."""
    try:
        import torch
    except ImportError:
        return None
    return osp.join(osp.dirname(torch.__file__), 'include')


def cxx_standard(include_dir: Optional[str]) -> str:
    """The C++ standard to build mmcv with: c++17 (what mmcv 2.1.0's setup.py passes), or
    c++20 where torch's headers refuse anything older (torch >= 2.14: ATen.h has
    ``#error C++20 or later compatible compiler is required``)."""
    try:
        with open(osp.join(include_dir or '', 'ATen', 'ATen.h')) as f:
            head = f.read(2000)
    except OSError:
        return 'c++17'
    return 'c++20' if '__cplusplus < 202002L' in head else 'c++17'


def cache_key(text: str) -> str:
    """A folder name for the pip cache of one mmcv build (pip keys built wheels by the
    source URL only, so builds for different torch builds must not share a cache)."""
    return re.sub(r'[^A-Za-z0-9.+-]+', '_', text)


# Known answers. NMS: box 1 overlaps box 0 at IoU 81/100 > 0.5 and goes; box 2 stays.
NMS_BOXES = [[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]]
NMS_SCORES = [0.9, 0.8, 0.7]
NMS_KEEP = [0, 2]
# RoIAlign (aligned, 2x2 bins, 2x2 samples per bin) of the 4x4 map f(y, x) = x + 4y over
# the box (0, 0, 4, 4): the samples fall on pixel centres, and f is linear, so each bin is
# the mean of its 2x2 pixels.
ROI_FEATURE = [[float(x + 4 * y) for x in range(4)] for y in range(4)]
ROI_BOX = [0., 0., 0., 4., 4.]
ROI_EXPECTED = [[2.5, 4.5], [10.5, 12.5]]


def run_ops(device: str) -> None:
    """mmcv's NMS and RoIAlign on ``device`` against the known answers."""
    import torch
    from mmcv.ops import nms, roi_align
    boxes = torch.tensor(NMS_BOXES, device=device)
    _, keep = nms(boxes, torch.tensor(NMS_SCORES, device=device), 0.5)
    if keep.cpu().tolist() != NMS_KEEP:
        raise EnvCheckError(f'mmcv NMS on {device} kept boxes {keep.cpu().tolist()}, '
                            f'expected {NMS_KEEP}: its compiled ops are broken; rebuild mmcv '
                            f'({SETUP})')
    feature = torch.tensor(ROI_FEATURE, device=device)[None, None]
    rois = torch.tensor([ROI_BOX], device=device)
    out = roi_align(feature, rois, (2, 2), 1.0, 2, 'avg', True)
    expected = torch.tensor(ROI_EXPECTED)[None, None]
    if out.shape != expected.shape or not torch.allclose(out.cpu(), expected, atol=1e-5):
        raise EnvCheckError(f'mmcv RoIAlign on {device} gave {out.cpu().flatten().tolist()}, '
                            f'expected {expected.flatten().tolist()}: its compiled ops are '
                            f'broken; rebuild mmcv ({SETUP})')


def check_ops(choice: str = 'existing', environ: Optional[Dict[str, str]] = None) -> List[str]:
    """Run mmcv's ops on every device torch can use here; returns those devices.

    With a CUDA choice (or CUDA torch that sees a GPU), mmcv must have been compiled with
    CUDA even when no GPU is visible to run on.
    """
    environ = os.environ if environ is None else environ
    torch_build = installed_torch()
    try:
        import mmcv
    except Exception as exc:  # an import can fail in many ways
        raise EnvCheckError(f'mmcv is not importable here ({exc}); install it with '
                            f'{SETUP}') from None
    try:
        import mmcv.ops
    except Exception as exc:  # e.g. no _ext, or a library of another torch
        raise EnvCheckError(f'mmcv {mmcv.__version__} has no usable compiled ops (import '
                            f'mmcv.ops: {exc}); build them with {SETUP}') from None
    devices = ['cpu']
    if wants_cuda_ops(choice, torch_build, environ) or torch_build.capabilities:
        if mmcv.ops.get_compiling_cuda_version() == 'not available':
            raise EnvCheckError(f'mmcv {mmcv.__version__} was built without CUDA ops; rerun '
                                f'with {SETUP} --torch cuda (it rebuilds mmcv with '
                                f'FORCE_CUDA=1), or hide the GPUs (CUDA_VISIBLE_DEVICES=) '
                                f'to work on the CPU only')
        if torch_build.capabilities:
            devices.append('cuda')
    for device in devices:
        run_ops(device)
    return devices


def stack_versions() -> str:
    """One line: the versions of the stack, and where this package is imported from."""
    try:
        import mmdet
        import mmengine
        import mmseg

        import mmpoolformer
    except Exception as exc:  # mmdet and mmseg also refuse an mmcv outside their range
        raise EnvCheckError(f'{type(exc).__name__}: {exc}') from None
    return (f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg '
            f'{mmseg.__version__}, mmpoolformer {mmpoolformer.__version__} from '
            f'{osp.dirname(osp.dirname(osp.abspath(mmpoolformer.__file__)))}')


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='step', required=True)
    for step, text in [('version', 'fail unless the torch release is in the supported range'),
                       ('torch', 'print the installed torch build; fail if it is not the '
                        'chosen one'),
                       ('nvcc', 'fail unless the CUDA compiler for the chosen build is here'),
                       ('build', 'print the shell exports for building mmcv, or fail'),
                       ('ops', "run mmcv's ops on every device and import the stack")]:
        step_parser = sub.add_parser(step, help=text)
        if step == 'version':
            step_parser.add_argument('release', help='a torch release, e.g. 2.1.2')
            continue
        step_parser.add_argument('--torch', default='existing',
                                 help='cpu, cuda, cuda:cuXYZ, index or existing (default)')
    sub.choices['torch'].add_argument('--version', help='the torch release it must be')
    sub.choices['ops'].add_argument(
        '--quiet', action='store_true', help='only the ops; print nothing on success')
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    try:
        if args.step == 'version':
            check_version(args.release)
            return 0
        parse_choice(args.torch)
        if args.step == 'torch':
            print(check_torch(args.torch, installed_torch(), args.version))
        elif args.step == 'nvcc':
            check_nvcc(args.torch, environ)
        elif args.step == 'build':
            plan = plan_build(args.torch, installed_torch(), environ)
            for key, value in plan.items():
                print(f'export {key}={shlex.quote(value)}')
        else:
            devices = check_ops(args.torch, environ)
            if not args.quiet:
                import mmcv
                print(f'{describe_torch(installed_torch())}, mmcv {mmcv.__version__} (NMS '
                      f'and RoIAlign ok on {", ".join(devices)}), {stack_versions()}')
    except EnvCheckError as exc:
        print(f'ERROR: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
