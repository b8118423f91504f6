#!/usr/bin/env bash
# The README's main command: set up, generate the synthetic shapes data, train a
# PoolFormer-S12 model on the CPU with tools/train.py --amp (bf16 autocast), evaluate
# it (tools/test.py), draw its predictions on four validation images, plot its training
# curves and summarise the run (tools/analysis/quickstart_report.py).
#
#   bash tools/quickstart.sh [--task det|seg|ins|upernet] [--seed N] [extra tools/train.py arguments]
#
# --task det (default)  RetinaNet, COCO bbox mAP                  work_dirs/quickstart
#        seg            Semantic FPN, mIoU                        work_dirs/quickstart_seg
#        ins            Mask R-CNN, COCO mask (segm) mAP          work_dirs/quickstart_ins
#        upernet        UperNet with stage-wise lr decay, mIoU    work_dirs/quickstart_upernet
# --seed N trains with randomness.seed=N (the configs' is 0); the work dir gets _seedN.
# Environment (relative paths are from the repository root):
#   WORK_DIR                the work dir instead of the one above
#   QUICKSTART_DATA         the shapes data root (default data/shapes)
#   QUICKSTART_SHAPES_ARGS  make_shapes.py options for data not yet generated there, e.g.
#                           "--num-train 8 --num-val 4 --size 64" (the demo draws
#                           validation images 0-3: keep --num-val >= 4)
#   MMPOOLFORMER_VENV       the virtual environment (default .venv), as for setup_env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TASK=det
SEED=""
TRAIN_ARGS=()
while (($#)); do
  case "$1" in
    --task | --seed) opt="$1" value="${2-}"; shift $(($# < 2 ? 1 : 2)) ;;
    --task=* | --seed=*) opt="${1%%=*}" value="${1#*=}"; shift ;;
    *) TRAIN_ARGS+=("$1"); shift; continue ;;
  esac
  if [[ "$opt" == --task ]]; then
    if [[ ! "$value" =~ ^(det|seg|ins|upernet)$ ]]; then
      echo "ERROR: --task must be det, seg, ins or upernet, got '$value'" >&2
      exit 2
    fi
    TASK="$value"
  elif [[ ! "$value" =~ ^[0-9]+$ ]]; then
    echo "ERROR: --seed needs a non-negative integer, got '$value'" >&2
    exit 2
  else
    SEED="$value"
  fi
done

DATA=${QUICKSTART_DATA:-data/shapes}
# make_shapes.py --tasks det writes COCO's layout with boxes and instance masks (polygons
# and RLE): RetinaNet and Mask R-CNN read the same data.
case "$TASK" in
  det)
    CONFIG=configs/quickstart/retinanet_poolformer_s12_shapes.py
    NAME=quickstart LAYOUT=det METRIC=coco/bbox_mAP IMAGES="$DATA/coco/val2017"
    TITLE="RetinaNet-PoolFormer-S12 on the synthetic shapes (quickstart)" ;;
  ins)
    CONFIG=configs/quickstart/mask_rcnn_poolformer_s12_shapes.py
    NAME=quickstart_ins LAYOUT=det METRIC=coco/segm_mAP IMAGES="$DATA/coco/val2017"
    TITLE="Mask R-CNN-PoolFormer-S12 on the synthetic shapes (quickstart)" ;;
  seg)
    CONFIG=configs/quickstart/semantic_fpn_poolformer_s12_shapes.py
    NAME=quickstart_seg LAYOUT=seg METRIC=mIoU
    IMAGES="$DATA/ade/ADEChallengeData2016/images/validation"
    TITLE="Semantic FPN-PoolFormer-S12 on the synthetic shapes (quickstart)" ;;
  upernet)
    CONFIG=configs/quickstart/upernet_poolformer_s12_shapes.py
    NAME=quickstart_upernet LAYOUT=seg METRIC=mIoU
    IMAGES="$DATA/ade/ADEChallengeData2016/images/validation"
    TITLE="UperNet-PoolFormer-S12 on the synthetic shapes (quickstart)" ;;
esac
WORK=${WORK_DIR:-work_dirs/$NAME${SEED:+_seed$SEED}}
SEED_ARGS=()
[[ -n "$SEED" ]] && SEED_ARGS=(--cfg-options "randomness.seed=$SEED")
read -ra SHAPES_ARGS <<< "${QUICKSTART_SHAPES_ARGS:-}"
# The configs read data/shapes; another root replaces their data paths in train and test.
DATA_ARGS=()
if [[ -n "${QUICKSTART_DATA:-}" ]]; then
  DATA_ARGS=(--cfg-options)
  if [[ "$LAYOUT" == det ]]; then
    for split in train val test; do
      DATA_ARGS+=("${split}_dataloader.dataset.data_root=$DATA/coco/")
    done
    # Both detection quickstarts evaluate with [CocoMetric, DetectionErrorMetric].
    for evaluator in {val,test}_evaluator.{0,1}; do
      DATA_ARGS+=("$evaluator.ann_file=$DATA/coco/annotations/instances_val2017.json")
    done
  else
    for split in train val test; do
      DATA_ARGS+=("${split}_dataloader.dataset.data_root=$DATA/ade/ADEChallengeData2016")
    done
  fi
fi

bash tools/setup_env.sh
PY="${MMPOOLFORMER_VENV:-.venv}/bin/python"
$PY tools/dataset_converters/make_shapes.py "$DATA" --tasks "$LAYOUT" "${SHAPES_ARGS[@]}"
$PY tools/train.py "$CONFIG" --work-dir "$WORK" --amp "${DATA_ARGS[@]}" \
    "${SEED_ARGS[@]}" "${TRAIN_ARGS[@]}"
CKPT="$(cat "$WORK/last_checkpoint")"
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test" "${DATA_ARGS[@]}"
$PY demo/image_demo.py "$IMAGES"/00000{0,1,2,3}.jpg "$CONFIG" \
    --weights "$CKPT" --out-file "$WORK/predictions.png"
$PY tools/analysis/plot_logs.py "$WORK" --out "$WORK/loss_plot.png" --metric "$METRIC" \
    --title "$TITLE"
$PY tools/analysis/quickstart_report.py "$WORK" --metric "$METRIC"
