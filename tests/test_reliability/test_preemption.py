"""A stop signal checkpoints at the next iteration and exits with 75; --resume then gives
what an uninterrupted run gives, bit for bit (CPU, deterministic, same seed).

The signal goes to the whole process group, as Slurm signals every process of a job step:
the dataloader worker gets it too and must not die. Also: a 2-process DDP run where only
rank 1 is signalled, a signal during validation, a burst of signals during the save.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmpoolformer.checkpoint import load_checkpoint_file
from mmpoolformer.engine import EXIT_PREEMPTED, PreemptionHook, parse_signals

from .cli import REPO, config, free_port, tiny_options

ITERS = 8
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rank_probe.py')
# The three tasks, one with --amp (bf16 autocast) and one with the compiled backbone.
CASES = {'retinanet': [], 'mask_rcnn': ['--amp'],
         'semantic_fpn': ['model.backbone.compile=True']}


def options(case, root, *extra):
    return tiny_options(case, root, ITERS, 'randomness.seed=0', 'randomness.deterministic=True',
                        'default_hooks.checkpoint.interval=100',  # no periodic checkpoint
                        'train_dataloader.num_workers=1', *extra)


def train_cmd(case, work_dir, root, *extra_args, cfg=()):
    flags = [a for a in CASES[case] if a.startswith('--')] + list(extra_args)
    cfg = [a for a in CASES[case] if not a.startswith('--')] + list(cfg)
    return [sys.executable, 'tools/train.py', config(case), '--work-dir', str(work_dir),
            *flags, '--cfg-options', *options(case, root, *cfg)]


_STARTED = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:  # a failed test's run: its whole process group goes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def start(cmd, log, env=None):
    with open(log, 'w') as out:  # a file, not a pipe that nobody reads while we wait
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    _STARTED.append(proc)
    return proc


def finish(proc, log, timeout=600):
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f'still running after {timeout} s: '
                             f'{open(log).read()[-2000:]}') from None
    return proc.returncode, open(log).read()


def iterations_logged(work_dir) -> int:
    """Training iterations whose scalars the logger (interval 1) has written."""
    files = list(work_dir.glob('*/vis_data/scalars.json'))
    if not files:
        return 0
    return sum('"loss"' in line for line in files[0].read_text().splitlines())


def losses(work_dir) -> dict:
    """{iteration: loss} of every scalars.json under work_dir (a resumed run has two)."""
    found = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                found[record['iter']] = record['loss']
    return found


def wait_for(condition, proc, timeout=600):
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, 'the run ended before the signal'
        assert time.time() < deadline, 'timed out'
        time.sleep(0.02)


def assert_same_result(straight, resumed):
    a = load_checkpoint_file(str(straight / f'iter_{ITERS}.pth'))
    b = load_checkpoint_file(str(resumed / f'iter_{ITERS}.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == ITERS
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    assert [g['lr'] for g in a['optimizer']['param_groups']] == \
        [g['lr'] for g in b['optimizer']['param_groups']]
    assert losses(resumed) == losses(straight)


def preempted_checkpoint(work_dir, log):
    """The iteration the run stopped after, checked against its checkpoint and log."""
    last = (work_dir / 'last_checkpoint').read_text().strip()
    stopped = int(os.path.basename(last)[len('iter_'):-len('.pth')])
    assert load_checkpoint_file(last)['meta']['iter'] == stopped
    assert f'after iteration {stopped}: saved {last}; exiting with {EXIT_PREEMPTED}' in log
    marker = json.loads((work_dir / 'preempted').read_text())
    assert marker['iter'] == stopped and marker['checkpoint'] == last
    return stopped


@pytest.mark.slow
@pytest.mark.parametrize('case', list(CASES))
def test_a_signal_at_a_random_iteration_checkpoints_and_resume_is_exact(case, shapes, tmp_path):
    straight, stopped_dir = tmp_path / 'straight', tmp_path / 'stopped'
    rc, log = finish(start(train_cmd(case, straight, shapes), tmp_path / 'straight.log'),
                     tmp_path / 'straight.log')
    assert rc == 0, log[-3000:]
    assert not (straight / 'preempted').exists()

    at = random.Random().randint(1, ITERS - 3)
    proc = start(train_cmd(case, stopped_dir, shapes), tmp_path / 'stopped.log')
    wait_for(lambda: iterations_logged(stopped_dir) >= at, proc)
    os.killpg(proc.pid, signal.SIGTERM)  # the process group: the dataloader worker too
    rc, log = finish(proc, tmp_path / 'stopped.log')
    assert rc == EXIT_PREEMPTED, (at, log[-3000:])
    stopped = preempted_checkpoint(stopped_dir, log)
    # It finished the iteration in progress and stopped right there.
    assert at <= stopped <= at + 1 < ITERS, (at, stopped)
    assert not (stopped_dir / f'iter_{ITERS}.pth').exists()

    rc, log = finish(start(train_cmd(case, stopped_dir, shapes, '--resume'),
                           tmp_path / 'resumed.log'), tmp_path / 'resumed.log')
    assert rc == 0, log[-3000:]
    assert f'Advance dataloader {stopped} steps' in log, log[-2000:]
    assert not (stopped_dir / 'preempted').exists()  # a finished run leaves no marker
    assert_same_result(straight, stopped_dir)


@pytest.mark.slow
def test_ddp_both_ranks_stop_after_the_same_iteration_when_one_is_signalled(shapes,
                                                                           tmp_path):
    work, probe = tmp_path / 'work', tmp_path / 'probe'
    probe.mkdir()

    def torchrun(*extra):
        return [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                f'--master_port={free_port()}', PROBE, 'tools/train.py', config('retinanet'),
                '--launcher', 'pytorch', '--work-dir', str(work), *extra, '--cfg-options',
                *options('retinanet', shapes, 'train_cfg.val_begin=1000')]

    env = {**os.environ, 'RANK_PROBE_DIR': str(probe)}
    proc = start(torchrun(), tmp_path / 'ddp.log', env=env)
    wait_for(lambda: iterations_logged(work) >= 2, proc)
    os.kill(int((probe / 'pid.1').read_text()), signal.SIGUSR1)  # rank 1 only
    rc, log = finish(proc, tmp_path / 'ddp.log')
    # torchrun reports its workers' exit statuses and fails itself.
    assert rc != 0 and log.count(f'exitcode  : {EXIT_PREEMPTED}') == 2, log[-3000:]
    stopped = preempted_checkpoint(work, log)
    # Rank 0 (which logs) stopped on rank 1's signal, after the same iteration.
    assert f"Stopped by another rank's signal after iteration {stopped}" in log, log[-3000:]
    assert not (probe / 'renames.1').exists()  # only rank 0 wrote files
    rc, log = finish(start(torchrun('--resume'), tmp_path / 'resumed.log', env=env),
                     tmp_path / 'resumed.log')
    assert rc == 0 and f'Advance dataloader {stopped} steps' in log, log[-3000:]
    assert load_checkpoint_file(str(work / f'iter_{ITERS}.pth'))['meta']['iter'] == ITERS


SLOW_VALIDATION = """
import time
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class SlowValidationHook(Hook):
    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        time.sleep(1)
"""


@pytest.mark.slow
def test_a_signal_during_validation_stops_it_and_the_run_resumes(shapes, tmp_path):
    work = tmp_path / 'work'
    (tmp_path / 'slow_validation.py').write_text(SLOW_VALIDATION)
    config_file = tmp_path / 'slow_val.py'
    config_file.write_text(
        f"_base_ = [{os.path.join(REPO, config('retinanet'))!r}]\n"
        f"custom_imports = dict(imports=['mmpoolformer', 'slow_validation'], "
        f"allow_failed_imports=False)\n"
        f"custom_hooks = [dict(type='SlowValidationHook')]\n")
    env = {**os.environ, 'PYTHONPATH': f'{tmp_path}:{os.environ.get("PYTHONPATH", "")}'}
    cfg = ['train_cfg.val_interval=4', 'val_dataloader.batch_size=1']

    def cmd(*extra):
        command = train_cmd('retinanet', work, shapes, *extra, cfg=cfg)
        command[2] = str(config_file)
        return command

    proc = start(cmd(), tmp_path / 'run.log', env=env)
    wait_for(lambda: 'Iter(val) [1/' in open(tmp_path / 'run.log').read(), proc)
    os.killpg(proc.pid, signal.SIGINT)
    rc, log = finish(proc, tmp_path / 'run.log')
    assert rc == EXIT_PREEMPTED, log[-3000:]
    assert preempted_checkpoint(work, log) == 4
    assert 'Iter(val) [4/4]' not in log  # the validation was cut short
    rc, log = finish(start(cmd('--resume'), tmp_path / 'resumed.log', env=env),
                     tmp_path / 'resumed.log')
    assert rc == 0 and 'Advance dataloader 4 steps' in log, log[-3000:]
    assert load_checkpoint_file(str(work / f'iter_{ITERS}.pth'))['meta']['iter'] == ITERS


@pytest.mark.slow
def test_signals_during_the_save_corrupt_nothing(shapes, tmp_path):
    work = tmp_path / 'work'
    proc = start(train_cmd('retinanet', work, shapes), tmp_path / 'run.log')
    wait_for(lambda: iterations_logged(work) >= 2, proc)
    os.kill(proc.pid, signal.SIGTERM)
    # Keep signalling until the run is gone: many of these land during the save.
    sent = 1
    while proc.poll() is None:
        try:
            os.kill(proc.pid, random.choice([signal.SIGTERM, signal.SIGUSR1]))
            sent += 1
        except ProcessLookupError:
            break
        time.sleep(0.005)
    rc, log = finish(proc, tmp_path / 'run.log')
    assert rc == EXIT_PREEMPTED, log[-3000:]
    assert 'the checkpoint is being saved; it completes first' in log, (sent, log[-2000:])
    stopped = preempted_checkpoint(work, log)  # it loads: complete and recorded
    rc, log = finish(start(train_cmd('retinanet', work, shapes, '--resume'),
                           tmp_path / 'resumed.log'), tmp_path / 'resumed.log')
    assert rc == 0 and f'Advance dataloader {stopped} steps' in log, log[-3000:]


@pytest.mark.slow
def test_an_epoch_based_run_stopped_inside_an_epoch_resumes_inside_it(shapes, tmp_path):
    """mmengine's epoch loop would restart the epoch (and overrun the schedule): the
    resumed epoch passes over the batches trained before the checkpoint."""
    work = tmp_path / 'work'
    config_file = tmp_path / 'epochs.py'
    config_file.write_text(
        f"_base_ = [{os.path.join(REPO, config('retinanet'))!r}]\n"
        f"train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=2, "
        f"val_interval=2)\n"
        f"train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))\n")

    def cmd(*extra):
        command = train_cmd('retinanet', work, shapes, *extra)
        command[2] = str(config_file)
        # (options of the iteration loop that an epoch loop does not take)
        return [a for a in command if not a.startswith(('train_cfg.max_iters',
                                                        'train_cfg.val_interval'))]

    proc = start(cmd(), tmp_path / 'run.log')  # 8 images, batch 2: 4 iterations an epoch
    wait_for(lambda: iterations_logged(work) >= 1, proc)
    os.killpg(proc.pid, signal.SIGTERM)
    rc, log = finish(proc, tmp_path / 'run.log')
    assert rc == EXIT_PREEMPTED, log[-3000:]
    stopped = preempted_checkpoint(work, log)
    assert 1 <= stopped <= 2
    assert load_checkpoint_file(str(work / f'iter_{stopped}.pth'))['meta']['epoch'] == 0
    rc, log = finish(start(cmd('--resume'), tmp_path / 'resumed.log'),
                     tmp_path / 'resumed.log')
    assert rc == 0, log[-3000:]
    assert f'Resuming inside epoch 1: passing over its first {stopped} batches' in log
    # The schedule ends where an uninterrupted run ends: 2 epochs of 4 iterations, each
    # iteration trained once (mmengine's loop would have run 10).
    final = load_checkpoint_file((work / 'last_checkpoint').read_text().strip())
    assert final['meta']['iter'] == 2 * 4
    assert sorted(losses(work)) == list(range(1, 2 * 4 + 1))
    assert 'Iter(train) [9/' not in log


# ------------------------------------------------------------------ configuration
def test_signals_are_named_or_numbered_and_bad_ones_refused():
    assert parse_signals(['TERM', 'sigusr1', int(signal.SIGINT)]) == [
        signal.SIGTERM, signal.SIGUSR1, signal.SIGINT]
    assert parse_signals('none') == parse_signals(['none']) == parse_signals(None) == []
    for bad in (['SIGKILL'], ['NOPE'], [999]):
        with pytest.raises(ValueError, match='not a signal that can be caught'):
            parse_signals(bad)
    with pytest.raises(ValueError, match='exit_code must be an int in 2..255'):
        PreemptionHook(exit_code=1)


def test_train_tool_adds_the_hook_by_default_and_none_turns_it_off(tmp_path):
    from mmengine.config import Config

    from mmpoolformer.engine import enable_preemption
    cfg = Config(dict(custom_hooks=[], train_cfg=dict(type='EpochBasedTrainLoop',
                                                      max_epochs=12)))
    assert enable_preemption(cfg)
    assert cfg.custom_hooks == [dict(type='mmpoolformer.PreemptionHook',
                                     signals=['SIGTERM', 'SIGUSR1', 'SIGINT'])]
    assert cfg.train_cfg.type == 'mmpoolformer.EpochBasedTrainLoop'
    assert not enable_preemption(cfg, ['none']) and cfg.custom_hooks == []
    proc = subprocess.run([sys.executable, 'tools/train.py', 'cfg.py', '--stop-signals',
                           'KILL'], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and '--stop-signals: stop signal' in proc.stderr
