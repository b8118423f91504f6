#!/usr/bin/env bash
# The one command for a CUDA machine: the parity suite on the device, its table of errors,
# torch.compile of every family there (and the custom operators' fake implementations),
# then the backbone benchmark, eager and compiled (not yet timed on a GPU).
#
#   bash tools/device_check.sh [--device cuda|cpu] [--quick]
#
# Needs torch, pytest and this package, with mmengine and mmcv's Python parts importable
# (installed, or on PYTHONPATH): neither mmcv's compiled ops nor mmdet or mmseg. Python:
# $PYTHON, else .venv/bin/python when it exists, else python (tools/_python.sh). Logs go
# to $OUT (or ./device_check_logs). --device cpu rehearses the same steps on the CPU
# (smaller benchmark); --quick skips the benchmark. Exit status: non-zero if any step
# failed.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEVICE=cuda
QUICK=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "usage: bash tools/device_check.sh [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
  esac
done
if [[ "$DEVICE" != cuda && "$DEVICE" != cpu ]]; then
  echo "--device must be cuda or cpu, got '$DEVICE'" >&2; exit 2
fi
LOGS="${OUT:-device_check_logs}"
mkdir -p "$LOGS"
source tools/_python.sh
PY="$PYTHON"
status=0
"$PY" - "$DEVICE" <<'PY' 2>&1 | tee "$LOGS/device.txt" || exit 1
import sys, torch
device = sys.argv[1]
assert device == 'cpu' or torch.cuda.is_available(), 'torch sees no CUDA device here'
name = torch.cuda.get_device_name() if device == 'cuda' else 'CPU'
print(f'torch {torch.__version__} on {name}')
PY
"$PY" -m pytest tests/test_models/test_parity.py --device "$DEVICE" -q -rs \
  -p no:cacheprovider 2>&1 | tee "$LOGS/parity_$DEVICE.txt"
[[ ${PIPESTATUS[0]} -ne 0 ]] && status=1
"$PY" tools/analysis/parity_table.py --device "$DEVICE" 2>&1 | tee "$LOGS/parity_table_$DEVICE.txt"
[[ ${PIPESTATUS[0]} -ne 0 ]] && status=1
# torch.compile of every family on the device (what it compiles: kernels.COMPILED_FAST_PATHS)
"$PY" -m pytest tests/test_models/test_compile.py --device "$DEVICE" -q -rs \
  -k 'compiled_blocks_match_eager or fake_implementations' -p no:cacheprovider 2>&1 \
  | tee "$LOGS/compile_$DEVICE.txt"
[[ ${PIPESTATUS[0]} -ne 0 ]] && status=1
if [[ $QUICK -eq 0 ]]; then
  if [[ "$DEVICE" == cuda ]]; then
    bench=(--archs s12 s36 --batch 16 --repeat 10 --memory --compile)
  else
    bench=(--archs s12 --batch 2 --repeat 3)
  fi
  "$PY" tools/analysis/benchmark_backbone.py --device "$DEVICE" --channels-last-reference \
    "${bench[@]}" 2>&1 | tee "$LOGS/benchmark_$DEVICE.txt"
  [[ ${PIPESTATUS[0]} -ne 0 ]] && status=1
fi
echo "device_check: $([[ $status -eq 0 ]] && echo all steps passed || echo a step FAILED)"
exit $status
