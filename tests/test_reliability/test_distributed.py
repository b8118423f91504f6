"""Two CPU processes (gloo): only rank 0 writes checkpoints; a run killed with SIGKILL after
a checkpoint resumes to bit-identical weights; a dead or hung rank ends the others.

What bounds the wait when a rank dies:
- under torchrun, its agent polls the workers (every 0.1 s), and when one fails it stops
  the others and exits non-zero;
- without the agent, the dead rank's sockets close and gloo fails the survivors' next
  collective at once;
- a rank that hangs (alive, not answering; SIGSTOP here) is only detected by the
  process-group timeout: 300 s on CPU (mmpoolformer/apis/launch.py), set by
  MMPOOLFORMER_DIST_TIMEOUT or env_cfg.dist_cfg.timeout.
"""
import glob
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmpoolformer.checkpoint import load_checkpoint_file

from .cli import REPO, config, free_port, tiny_options

CASE = 'retinanet'
ITERS, EVERY = 4, 2
PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'rank_probe.py')


def options(root, iters=ITERS, every=EVERY):
    return tiny_options(CASE, root, iters, f'default_hooks.checkpoint.interval={every}',
                        'default_hooks.checkpoint.max_keep_ckpts=-1', 'randomness.seed=0',
                        'randomness.deterministic=True', 'train_cfg.val_begin=1000')


def tool_args(work_dir, root, *extra, **schedule):
    return [PROBE, 'tools/train.py', config(CASE), '--launcher', 'pytorch', '--work-dir',
            str(work_dir), *extra, '--cfg-options', *options(root, **schedule)]


def start(cmd, env, log):
    """Popen with the output in a file: a pipe nobody reads while we wait would fill up
    and block the job."""
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def torchrun(probe, work_dir, root, *extra, **schedule):
    """Start ``torchrun --nproc_per_node 2 tools/train.py`` (through rank_probe.py)."""
    os.makedirs(probe, exist_ok=True)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
           f'--master_port={free_port()}', *tool_args(work_dir, root, *extra, **schedule)]
    return start(cmd, {**os.environ, 'RANK_PROBE_DIR': str(probe)}, f'{probe}/output.txt')


def finish(proc, timeout=600):
    proc.wait(timeout=timeout)
    with open(proc.log) as f:
        return proc.returncode, f.read()


def rank_pid(probe, rank, timeout=120):
    path = os.path.join(probe, f'pid.{rank}')
    deadline = time.time() + timeout
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.05)
    return int(open(path).read())


def alive(pid):
    """Running or stopped; a zombie (dead, not yet reaped by its new parent) is not."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in 'ZX'
    except FileNotFoundError:
        return False


def wait_until(condition, procs, timeout=300):
    deadline = time.time() + timeout
    while not condition():
        assert all(p.poll() is None for p in procs), 'a process ended early'
        assert time.time() < deadline, 'timed out'
        time.sleep(0.02)


def training_started(work_dir):
    # The logger (interval 1) writes the first iteration's scalars on rank 0.
    return lambda: bool(glob.glob(f'{work_dir}/*/vis_data/scalars.json'))


def kill_all(pids):
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_same_weights(shapes, tmp_path):
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    rc, log = finish(torchrun(tmp_path / 'probe-straight', straight, shapes))
    assert rc == 0, log[-4000:]
    assert 'Distributed training: True' in log and 'GPU number: 2' in log, log[-2000:]
    # Only rank 0 moved files into place: each checkpoint, then last_checkpoint naming it.
    renames = (tmp_path / 'probe-straight' / 'renames.0').read_text().split()
    assert not (tmp_path / 'probe-straight' / 'renames.1').exists()
    written = [p for p in renames if p.startswith(str(straight))]
    assert written == [str(straight / name) for i in range(EVERY, ITERS + 1, EVERY)
                       for name in (f'iter_{i}.pth', 'last_checkpoint')]

    probe = tmp_path / 'probe-killed'
    proc = torchrun(probe, killed, shapes)
    pids = [proc.pid] + [rank_pid(probe, r) for r in (0, 1)]
    try:
        marker = killed / 'last_checkpoint'
        wait_until(lambda: marker.exists() and marker.read_text().strip().endswith(
            f'iter_{EVERY}.pth'), [proc])
        # The whole job at once, agent first (workers run in their own sessions).
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        deadline = time.time() + 10  # SIGKILL is delivered asynchronously
        while any(alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in pids)
    finally:
        kill_all(pids)
    assert not (killed / f'iter_{ITERS}.pth').exists(), 'ended before the kill'

    rc, log = finish(torchrun(tmp_path / 'probe-resumed', killed, shapes, '--resume'))
    assert rc == 0, log[-4000:]
    assert f'Advance dataloader {EVERY} steps' in log, log[-2000:]  # it really resumed

    a, b = (load_checkpoint_file(str(d / f'iter_{ITERS}.pth'))
            for d in (straight, killed))
    assert a['meta']['iter'] == b['meta']['iter'] == ITERS
    assert [g['lr'] for g in a['optimizer']['param_groups']] == \
        [g['lr'] for g in b['optimizer']['param_groups']]
    assert a['state_dict'].keys() == b['state_dict'].keys()
    # gloo sums two ranks' gradients in a fixed order, data order and RNG are restored:
    # nothing differs, to the bit.
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key


@pytest.mark.slow
def test_torchrun_ends_the_job_when_a_rank_is_killed(shapes, tmp_path):
    probe, work_dir = tmp_path / 'probe', tmp_path / 'work'
    proc = torchrun(probe, work_dir, shapes, iters=1000, every=1000)
    pids = [rank_pid(probe, r) for r in (0, 1)]
    try:
        wait_until(training_started(work_dir), [proc])
        os.kill(pids[1], signal.SIGKILL)
        killed_at = time.time()
        rc, log = finish(proc, timeout=120)
        elapsed = time.time() - killed_at
    finally:
        kill_all(pids)
    print(f'torchrun exited {elapsed:.1f} s after rank 1 was killed')
    assert rc != 0
    assert 'exitcode  : -9' in log and 'rank      : 1' in log, log[-2000:]
    # The agent stops the survivor (SIGTERM, SIGKILL after 30 s) before it exits.
    assert elapsed < 60
    assert not alive(pids[0])


DIST_TIMEOUT = 10


@pytest.mark.slow
@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGSTOP], ids=['killed', 'hung'])
def test_without_an_agent_rank_0_fails_within_the_process_group_timeout(shapes, tmp_path,
                                                                        sig):
    """Ranks started by hand (MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE), no torchrun agent."""
    probe, work_dir = tmp_path / 'probe', tmp_path / 'work'
    probe.mkdir()
    env = {**os.environ, 'RANK_PROBE_DIR': str(probe), 'MASTER_ADDR': '127.0.0.1',
           'MASTER_PORT': str(free_port()), 'WORLD_SIZE': '2', 'OMP_NUM_THREADS': '1',
           'MMPOOLFORMER_DIST_TIMEOUT': str(DIST_TIMEOUT)}
    procs = [start([sys.executable, *tool_args(work_dir, shapes, iters=1000, every=1000)],
                   {**env, 'RANK': str(r), 'LOCAL_RANK': str(r)}, probe / f'output.{r}.txt')
             for r in (0, 1)]
    try:
        wait_until(training_started(work_dir), procs)
        os.kill(procs[1].pid, sig)
        killed_at = time.time()
        rc, log = finish(procs[0], timeout=DIST_TIMEOUT + 120)
        elapsed = time.time() - killed_at
    finally:
        kill_all([p.pid for p in procs])
        for p in procs:
            p.wait()
    print(f'rank 0 exited {elapsed:.1f} s after rank 1 got {sig.name}')
    assert rc != 0
    if sig == signal.SIGKILL:  # the peer's sockets closed: no need to wait for a timeout
        assert 'Connection reset by peer' in log or 'Connection closed' in log, log[-2000:]
        assert elapsed < DIST_TIMEOUT
    else:  # the peer is silent: only the timeout ends the wait
        assert f'Timed out waiting {DIST_TIMEOUT * 1000}ms' in log, log[-2000:]
        assert DIST_TIMEOUT / 2 < elapsed < DIST_TIMEOUT + 60
