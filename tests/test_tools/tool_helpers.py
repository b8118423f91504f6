"""What the tests of tools/analysis, tools/convert_checkpoint.py and demo/ share.

``trained_run`` trains the quickstart RetinaNet (or Semantic FPN) for a few iterations on
the tiny generated data, once per test session however many modules ask for it (the run
is kept under pytest's session base temp dir and reused). It trains a config that adds
the README's TensorBoard switch to the quickstart config, so the same run shows that the
switch writes TensorBoard events next to the json scalars.
"""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ITERS = 4
VAL_INTERVAL = 2
# The README's TensorBoard switch: this one line in a config.
TENSORBOARD_SWITCH = ("visualizer = dict(vis_backends=[dict(type='LocalVisBackend'), "
                      "dict(type='TensorboardVisBackend')])")


def load_tool(relpath: str):
    """Import a script of tools/ or demo/ as a module (they are not a package)."""
    name = 'tool_' + osp.splitext(relpath)[0].replace('/', '_')
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, relpath))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run(*args, cwd=REPO, timeout=600):
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def with_tensorboard(config: str, folder) -> str:
    """A config that is ``config`` plus the TensorBoard switch, written into ``folder``."""
    path = osp.join(str(folder), osp.basename(config).replace('.py', '_tensorboard.py'))
    with open(path, 'w') as f:
        f.write(f"_base_ = ['{osp.join(REPO, config)}']\n{TENSORBOARD_SWITCH}\n")
    return path


def train_tiny(case: str, shapes_root, work_dir):
    """tools/train.py on the tiny data: ITERS iterations, validation every VAL_INTERVAL."""
    from .test_train_test import CASES
    config, options, _ = CASES[case]
    config = with_tensorboard(config, work_dir.parent)
    opts = options(shapes_root, iters=ITERS) + [f'train_cfg.val_interval={VAL_INTERVAL}']
    rc, log = run('tools/train.py', config, '--work-dir', str(work_dir), '--cfg-options',
                  *opts)
    assert rc == 0, log[-3000:]
    return dict(config=config, options=opts, work_dir=work_dir,
                checkpoint=work_dir / f'iter_{ITERS}.pth', log=log)


def trained_run(case: str, shapes_root, tmp_path_factory):
    """The run of ``train_tiny(case)``, trained at most once per session."""
    base = tmp_path_factory.getbasetemp() / f'trained_{case}'
    done = base / 'done.json'
    if done.exists():
        info = json.loads(done.read_text())
        info.update(work_dir=base / 'work', checkpoint=base / 'work' / f'iter_{ITERS}.pth')
        return info
    base.mkdir(exist_ok=True)
    info = train_tiny(case, shapes_root, base / 'work')
    done.write_text(json.dumps(dict(config=info['config'], options=info['options'],
                                    log=info['log'])))
    return info
