"""The README's path for an environment that already has torch, mmcv with its ops, mmdet and
mmseg: ``pip install -e .`` there, then mmdet's own tools/train.py trains our configs.

The "existing environment" is a second venv that sees the test interpreter's packages
(a .pth file naming its site-packages; --system-site-packages would expose the base
interpreter's instead) but not this package: its own editable install puts it there.
Offline: no dependency is resolved (--no-deps) and the build uses the setuptools at hand.
"""
import json
import os
import os.path as osp
import subprocess
import sys
import sysconfig

import pytest

from .test_train_test import CASES
from .tool_helpers import REPO

# Where `import mmpoolformer` finds it, and which install put it there (without importing).
WHERE = ("import importlib.metadata as m, importlib.util as u, json; print(json.dumps(dict("
         "module=u.find_spec('mmpoolformer').origin, "
         "installed=str(m.distribution('mmpoolformer').locate_file('')))))")


def run(python, *args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'PYTHONHOME')}
    proc = subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_pip_install_e_into_an_existing_env_then_mmdets_train_tool(shapes, tmp_path):
    venv = tmp_path / 'existing'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    python = venv / 'bin' / 'python'
    site = run(python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])',
               cwd=tmp_path)[1].strip()
    shared = {sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}
    with open(osp.join(site, 'shared_packages.pth'), 'w') as f:
        f.write('\n'.join(sorted(shared)) + '\n')
    rc, log = run(python, '-c', 'import torch, mmcv.ops, mmdet, mmseg', cwd=tmp_path)
    assert rc == 0, log[-2000:]
    rc, log = run(python, '-c', 'import mmpoolformer', cwd=tmp_path)
    assert rc == 1 and "No module named 'mmpoolformer'" in log, log[-2000:]

    rc, log = run(python, '-m', 'pip', 'install', '--no-deps', '--no-build-isolation',
                  '--no-index', '-e', REPO, cwd=tmp_path)
    assert rc == 0, log[-3000:]
    rc, log = run(python, '-c', WHERE, cwd=tmp_path)
    assert rc == 0, log[-2000:]
    where = json.loads(log.splitlines()[-1])
    assert where['module'] == osp.join(REPO, 'mmpoolformer', '__init__.py')
    assert where['installed'] == site  # this venv's own install, not the shared one's

    import mmdet
    train = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', 'train.py')
    config, options, _ = CASES['retinanet']
    work = tmp_path / 'work'
    # One iteration of batch 2 on 64 px images, and no validation.
    rc, log = run(python, train, osp.join(REPO, config), '--work-dir', str(work),
                  '--cfg-options', *options(shapes, iters=1), 'val_cfg=None',
                  'val_dataloader=None', 'val_evaluator=None', cwd=tmp_path)
    assert rc == 0, log[-3000:]
    assert (work / 'iter_1.pth').exists()
    assert 'Iter(train) [1/1]' in log and 'loss_cls: ' in log, log[-2000:]
