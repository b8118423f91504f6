"""tools/slurm_train.sh's decisions, with fake sbatch, srun and scontrol on PATH: it submits
a requeueable batch job that asks for the warning signal; inside the job it requeues after
a preemption exit (or its marker), and not after success or a crash; a requeued job
resumes."""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest

from .tool_helpers import REPO

SCRIPT = osp.join(REPO, 'tools', 'slurm_train.sh')
FAKE = '''#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0") $*" >> "$FAKE_LOG"
'''
FAKE_SRUN = FAKE + '''sleep "${FAKE_SRUN_SECONDS:-0}"
if [[ -n "${FAKE_SRUN_MARKER:-}" ]]; then echo '{}' > "$FAKE_SRUN_MARKER"; fi
exit "${FAKE_SRUN_RC:-0}"
'''


@pytest.fixture
def slurm(tmp_path):
    """(run the script with an environment, read the calls); fakes first on PATH."""
    bin_dir, log = tmp_path / 'bin', tmp_path / 'calls.log'
    bin_dir.mkdir()
    for name, text in (('sbatch', FAKE), ('scontrol', FAKE), ('srun', FAKE_SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(('SLURM_', 'FAKE_'))}
    base.update(PATH=f'{bin_dir}:{os.environ["PATH"]}', FAKE_LOG=str(log),
                PYTHON='python')
    work = tmp_path / 'work'

    def run(extra_env=None, args=(), background=False):
        cmd = ['bash', SCRIPT, 'part', 'job', 'cfg.py', str(work), *args]
        env = {**base, **(extra_env or {})}
        if background:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        return proc.returncode, proc.stdout + proc.stderr

    def calls():
        return log.read_text().splitlines() if log.exists() else []

    return run, calls, work


def test_from_a_login_node_it_submits_a_requeueable_job_with_the_warning_signal(slurm):
    run, calls, work = slurm
    rc, out = run({'SIGNAL_SECONDS': '300', 'GPUS': '16'}, args=['--amp'])
    assert rc == 0, out
    [call] = calls()
    words = call.split()
    assert words[0] == 'sbatch' and '--requeue' in words and '--signal=USR1@300' in words
    assert {'--partition=part', '--job-name=job', '--ntasks=16', '--ntasks-per-node=8',
            f'--output={work}/slurm-%j.out'} <= set(words)
    # The job runs this script again, with the same arguments.
    assert words[-6:] == [SCRIPT, 'part', 'job', 'cfg.py', str(work), '--amp']
    assert run()[0] == 0 and '--signal=USR1@90' in calls()[-1].split()  # the default


@pytest.mark.parametrize('srun_rc,marker,requeued,rc', [
    (75, False, True, 75),   # stopped on a signal: requeue
    (137, True, True, 75),   # a rank killed after the others exited, marker written
    (0, False, False, 0),    # finished
    (1, False, False, 1),    # crashed
])
def test_in_the_job_it_requeues_after_a_preemption_exit_only(slurm, srun_rc, marker,
                                                            requeued, rc):
    run, calls, work = slurm
    work.mkdir()
    env = {'SLURM_JOB_ID': '42', 'FAKE_SRUN_RC': str(srun_rc)}
    if marker:
        env['FAKE_SRUN_MARKER'] = str(work / 'preempted')
    got, out = run(env)
    assert got == rc, out
    srun = [c for c in calls() if c.startswith('srun ')]
    assert len(srun) == 1 and '--kill-on-bad-exit=1' in srun[0]
    assert f'tools/train.py cfg.py --work-dir={work} --launcher=slurm' in srun[0]
    assert '--resume' not in srun[0]  # a first run starts afresh
    assert ('scontrol requeue 42' in calls()) == requeued, calls()
    if requeued:
        assert f'requeued job 42; it resumes from {work}/last_checkpoint' in out


def test_a_stale_marker_from_an_earlier_run_does_not_requeue_a_crash(slurm):
    run, calls, work = slurm
    work.mkdir()
    (work / 'preempted').write_text('{}')
    old = time.time() - 3600
    os.utime(work / 'preempted', (old, old))
    rc, out = run({'SLURM_JOB_ID': '42', 'FAKE_SRUN_RC': '1'})
    assert rc == 1 and 'scontrol requeue 42' not in calls(), out


def test_a_requeued_job_resumes_without_arguments_added_by_hand(slurm):
    run, calls, work = slurm
    rc, out = run({'SLURM_JOB_ID': '42', 'SLURM_RESTART_COUNT': '2'}, args=['--amp'])
    assert rc == 0, out
    [srun] = [c for c in calls() if c.startswith('srun ')]
    assert srun.endswith('--launcher=slurm --amp --resume')


def test_the_batch_shell_outlives_the_signals_and_still_requeues(slurm):
    run, calls, work = slurm
    proc = run({'SLURM_JOB_ID': '42', 'FAKE_SRUN_RC': '75', 'FAKE_SRUN_SECONDS': '2'},
               background=True)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 75, out
    assert 'SIGTERM: waiting for the training to save its checkpoint' in out
    assert 'scontrol requeue 42' in calls()
