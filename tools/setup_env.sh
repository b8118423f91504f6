#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in ./.venv.
#
# Idempotent: the environment is stamped with a hash of this script, requirements/ and
# setup.py; when nothing changed, a second run returns at once.
#
# mmcv 2.1.0 has no wheel for torch 2.13, so it is built from its source release with its
# C++ ops (RoIAlign, NMS, ...). That takes ~10 minutes on 2 cores the first time; pip caches
# the wheel it builds, so later environments on the same machine install it in seconds.
# On a machine with CUDA and a CUDA build of torch, set FORCE_CUDA=1 (and TORCH_CUDA_ARCH_LIST)
# before running this script and the same step compiles mmcv's CUDA kernels as well.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMPOOLFORMER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mmpoolformer-installed"

digest() {
  cat "$ROOT/tools/setup_env.sh" "$ROOT"/requirements/*.txt "$ROOT/setup.py" | sha256sum | cut -d' ' -f1
}
want="$(digest)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "[setup_env] $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup_env] creating $VENV"
  "$PY" -m venv "$VENV"
fi
pip_install() {
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -c "$ROOT/requirements/constraints.txt" "$@"
}

pip_install -U "pip>=24"
pip_install torch==2.13.0
pip_install -r "$ROOT/requirements/build.txt"
# numpy, opencv and mmengine first so that mmcv's build finds them already satisfied.
pip_install "numpy<2" opencv-python mmengine

if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops" >/dev/null 2>&1; then
  echo "[setup_env] installing mmcv 2.1.0 with its ops (first build on a machine: ~10 min)"
  MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" pip_install --no-build-isolation mmcv==2.1.0
fi

pip_install -r "$ROOT/requirements/runtime.txt"
pip_install --no-build-isolation -e "$ROOT[tests]"

# A broken mmcv build (no compiled ops) must fail here, not deep inside a detector.
"$VENV/bin/python" - <<'PY'
import torch, mmcv, mmdet, mmseg, mmengine
from mmcv.ops import nms, RoIAlign  # compiled ops
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
print(f"[setup_env] torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__} (ops ok), mmdet {mmdet.__version__}, mmseg {mmseg.__version__}")
PY
echo "$want" > "$STAMP"
