#!/usr/bin/env bash
# The README's main command: set up, generate the synthetic shapes data, train
# RetinaNet-PoolFormer-S12 on the CPU with tools/train.py, evaluate with the COCO metric
# (tools/test.py), draw its predictions on validation images and plot its training curves.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CONFIG=configs/quickstart/retinanet_poolformer_s12_shapes.py
#   bash tools/quickstart.sh [--seed N] [extra tools/train.py arguments]
# --seed N trains with randomness.seed=N (the config's is 0) in work_dirs/quickstart_seedN.
SEED=""
if [[ "${1:-}" == "--seed" ]]; then
  if [[ ! "${2:-}" =~ ^[0-9]+$ ]]; then
    echo "ERROR: --seed needs a non-negative integer, got '${2:-}'" >&2
    exit 2
  fi
  SEED="$2"
  shift 2
fi
WORK=${WORK_DIR:-work_dirs/quickstart${SEED:+_seed$SEED}}
SEED_ARGS=()
[[ -n "$SEED" ]] && SEED_ARGS=(--cfg-options "randomness.seed=$SEED")

bash tools/setup_env.sh
PY=.venv/bin/python
$PY tools/dataset_converters/make_shapes.py data/shapes --tasks det
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --amp "${SEED_ARGS[@]}" "$@"
CKPT="$(cat "$WORK/last_checkpoint")"
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test"
$PY demo/image_demo.py data/shapes/coco/val2017/00000{0,1,2,3}.jpg "$CONFIG" \
    --weights "$CKPT" --out-file "$WORK/predictions.png"
$PY tools/analysis/plot_logs.py "$WORK" --out "$WORK/loss_plot.png" \
    --title "RetinaNet-PoolFormer-S12 on the synthetic shapes (quickstart)"
$PY tools/analysis/quickstart_report.py "$WORK"
