"""A training run killed with SIGKILL after a checkpoint resumes to the same result."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from .test_train_test import CASES, REPO, run

ITERS, EVERY = 12, 4


def options(case, root):
    _, opts, _ = CASES[case]
    return opts(root, ITERS) + [
        f'default_hooks.checkpoint.interval={EVERY}', f'train_cfg.val_interval={ITERS}',
        'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.seed=0',
        'randomness.deterministic=True'
    ]


def train_cmd(case, work_dir, root, *extra):
    config = CASES[case][0]
    return [sys.executable, 'tools/train.py', config, '--work-dir', str(work_dir), *extra,
            '--cfg-options', *options(case, root)]


def load(path):
    from mmpoolformer.checkpoint import load_checkpoint_file  # as data, on every torch
    return load_checkpoint_file(str(path))


@pytest.mark.slow
@pytest.mark.parametrize('case', ['retinanet', 'semantic_fpn'])
def test_sigkill_then_resume_matches_an_uninterrupted_run(case, shapes, tmp_path):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    rc, log = run(*train_cmd(case, straight, shapes)[1:])
    assert rc == 0, log[-3000:]

    proc = subprocess.Popen(train_cmd(case, killed, shapes), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill once the checkpoint is complete and recorded as the latest one.
    marker, first = killed / 'last_checkpoint', f'iter_{EVERY}.pth'
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if marker.exists() and marker.read_text().strip().endswith(first):
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
    assert not (killed / f'iter_{ITERS}.pth').exists()

    rc, log = run(*train_cmd(case, killed, shapes, '--resume')[1:])
    assert rc == 0, log[-3000:]
    # It really resumed from iteration 4 (not a fresh run that happens to match).
    assert f'Advance dataloader {EVERY} steps' in log, log[-2000:]

    a, b = load(straight / f'iter_{ITERS}.pth'), load(killed / f'iter_{ITERS}.pth')
    assert a['meta']['iter'] == b['meta']['iter'] == ITERS
    lrs = [[g['lr'] for g in ck['optimizer']['param_groups']] for ck in (a, b)]
    assert lrs[0] == lrs[1]
    assert a['state_dict'].keys() == b['state_dict'].keys()
    # CPU, deterministic kernels, same seed, same data order: bit-identical weights.
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    assert osp.exists(killed / 'last_checkpoint')
