#!/usr/bin/env bash
# Train on Slurm; a run stopped by its time limit or by preemption comes back by itself.
#
#   [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SIGNAL_SECONDS=90 SBATCH_ARGS=... SRUN_ARGS=...] \
#       bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
#
# From a login node it submits itself as a batch job (only a batch job can be requeued) and
# prints the job id; the job's output goes to WORK_DIR/slurm-<job id>.out. The job asks
# Slurm for SIGUSR1 SIGNAL_SECONDS before its time limit (--signal=USR1@SIGNAL_SECONDS);
# tools/train.py saves a checkpoint after the current iteration on that signal (and on the
# SIGTERM of a preemption) and exits with 75. The job then requeues itself
# (scontrol requeue); the requeued job (SLURM_RESTART_COUNT > 0) runs tools/train.py with
# --resume, which continues from WORK_DIR/last_checkpoint. A run that ends normally, or
# fails, is not requeued. (tools/train.py also leaves WORK_DIR/preempted when it stops on a
# signal: srun may report another status when the other ranks are killed after the first
# one exits, and the marker still says what happened.)
#
# Inside an allocation you made yourself (SLURM_JOB_ID set: your own sbatch script, or
# salloc), it runs srun there, and requeues the job the same way where Slurm allows it.
# FOREGROUND=1 runs srun from the login node in the foreground instead, without a batch
# job: it checkpoints on the signals, but cannot be requeued.
# Python: $PYTHON, else .venv/bin/python when it exists, else python (tools/_python.sh);
# the compute nodes must see the same path.
set -u
if [[ $# -lt 4 ]]; then
  echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SIGNAL_SECONDS=${SIGNAL_SECONDS:-90}
SBATCH_ARGS=${SBATCH_ARGS:-""}
SRUN_ARGS=${SRUN_ARGS:-""}
EXIT_PREEMPTED=75
# Slurm runs a batch job from a copy of this script: the repository comes with the job.
ROOT="${MMPOOLFORMER_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
source "$ROOT/tools/_python.sh"
log() { echo "[slurm_train] $*"; }

if [[ -z "${SLURM_JOB_ID:-}" && "${FOREGROUND:-0}" != 1 ]]; then
  mkdir -p "$WORK_DIR"
  # (no "B:" in --signal: the signal goes to the job's steps, the training processes)
  MMPOOLFORMER_ROOT="$ROOT" exec sbatch --partition="$PARTITION" --job-name="$JOB_NAME" \
    --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE" --gres=gpu:"$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" --signal=USR1@"$SIGNAL_SECONDS" --requeue \
    --open-mode=append --output="$WORK_DIR/slurm-%j.out" $SBATCH_ARGS \
    "$ROOT/tools/slurm_train.sh" "$@"
fi

args=("$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "${@:5}")
if [[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]]; then
  args+=(--resume)
  log "requeued (restart ${SLURM_RESTART_COUNT}): resuming from $WORK_DIR/last_checkpoint"
fi
srun_args=(--kill-on-bad-exit=1)
if [[ -z "${SLURM_JOB_ID:-}" ]]; then  # FOREGROUND=1: srun makes the allocation
  srun_args+=(-p "$PARTITION" --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE"
              --ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
              --cpus-per-task="$CPUS_PER_TASK" --signal=USR1@"$SIGNAL_SECONDS")
fi

# The batch shell gets the preemption's SIGTERM too: it waits for the training to save.
trap 'log "SIGTERM: waiting for the training to save its checkpoint"' TERM
trap 'log "SIGUSR1: waiting for the training to save its checkpoint"' USR1
started=$(date +%s)
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" srun "${srun_args[@]}" $SRUN_ARGS \
  "$PYTHON" -u "$ROOT/tools/train.py" "${args[@]}" &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"  # returns early when a trapped signal arrives
done
wait "$pid"
rc=$?

marker="$WORK_DIR/preempted"
stopped=0
if [[ $rc == "$EXIT_PREEMPTED" ]]; then
  stopped=1
elif [[ -f "$marker" && $(stat -c %Y "$marker") -ge $started ]]; then
  stopped=1  # written by this run: it stopped on a signal, whatever srun reports
fi
if [[ $stopped == 0 ]]; then
  exit "$rc"
fi
if [[ -n "${SLURM_JOB_ID:-}" ]] && scontrol requeue "$SLURM_JOB_ID"; then
  log "stopped on a signal after saving a checkpoint: requeued job $SLURM_JOB_ID; it resumes" \
      "from $WORK_DIR/last_checkpoint"
else
  log "stopped on a signal after saving a checkpoint; not requeued (no batch job to" \
      "requeue): run the same command with --resume to continue"
fi
exit "$EXIT_PREEMPTED"
