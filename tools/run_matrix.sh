#!/usr/bin/env bash
# The compatibility matrix: the two ends of the supported range, each in an environment of
# its own under .venvs/ (made by tools/setup_env.sh, idempotent), each running the tests
# whose outcome can depend on the torch, Python and numpy versions.
#
#   bash tools/run_matrix.sh [ENV ...]      # default: oldest newest (what CI runs)
#   bash tools/run_matrix.sh --prepare [ENV ...]   # only set the environments up
#
# ENV          Python  torch   numpy  mmcv
# oldest       3.9     2.1.2   1.x    2.1.0 with its ops, built against torch 2.1.2; mmdet, mmseg
# newest       3.12    2.14.1  2.x    mmcv-lite 2.1.0 (the backbones: no compiled ops, no
#                                     mmdet or mmseg; no build, to keep CI short)
# newest-full  3.12    2.14.1  2.x    2.1.0 with its ops, built with -std=c++20; mmdet, mmseg
#
# Tests in every environment: the compat module, the parity suite of every family (fp32,
# float64, bf16 autocast dtypes, fast paths on and off), checkpoint safety, ONNX export.
# With mmcv's ops also: checkpoints of plain mmdet runs, resume (killed, then resumed bit for
# bit), tools/train.py + tools/test.py on the three quickstart configs, and (oldest) the
# install into an existing environment with mmdet's own train.py. Extra arguments go to
# pytest. MMPOOLFORMER_TEST_WORKERS sets the pytest-xdist workers (default 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

envs=()
pytest_args=()
prepare_only=0
for arg in "$@"; do
  case "$arg" in
    oldest|newest|newest-full) envs+=("$arg") ;;
    --prepare) prepare_only=1 ;;
    *) pytest_args+=("$arg") ;;
  esac
done
[[ ${#envs[@]} -gt 0 ]] || envs=(oldest newest)

COMMON=(tests/test_compat.py tests/test_models/test_parity.py
        tests/test_checkpoint/test_safe_load.py tests/test_deployment/test_onnx_backbones.py
        tests/test_engine/test_lr_decay.py)
FULL=(tests/test_checkpoint/test_process_wide.py tests/test_tools/test_resume.py
      'tests/test_tools/test_train_test.py::test_train_then_test_gives_real_metrics[retinanet]'
      'tests/test_tools/test_train_test.py::test_train_then_test_gives_real_metrics[mask_rcnn]'
      'tests/test_tools/test_train_test.py::test_train_then_test_gives_real_metrics[semantic_fpn]'
      tests/test_tools/test_lr_decay_train.py)

for name in "${envs[@]}"; do
  case "$name" in
    oldest) options=(--python 3.9 --torch-version 2.1.2 --numpy 1 --mmcv full)
            tests=("${COMMON[@]}" "${FULL[@]}" tests/test_tools/test_existing_env.py) ;;
    newest) options=(--python 3.12 --torch-version 2.14.1 --numpy 2 --mmcv lite)
            tests=("${COMMON[@]}") ;;
    newest-full) options=(--python 3.12 --torch-version 2.14.1 --numpy 2 --mmcv full)
                 tests=("${COMMON[@]}" "${FULL[@]}") ;;
  esac
  venv="$ROOT/.venvs/$name"
  echo "[run_matrix] $name: ${options[*]} ($venv)"
  start=$SECONDS
  # --torch index: the build the configured index serves (from PyPI a CUDA build, which
  # runs on the CPU too); mmcv's CUDA kernels only where that torch sees a GPU.
  MMPOOLFORMER_VENV="$venv" bash tools/setup_env.sh --torch index "${options[@]}"
  echo "[run_matrix] $name: environment ready in $((SECONDS - start)) s"
  [[ $prepare_only == 0 ]] || continue
  start=$SECONDS
  "$venv/bin/python" -m pytest "${tests[@]}" -n "${MMPOOLFORMER_TEST_WORKERS:-2}" \
    --dist loadfile ${pytest_args[@]+"${pytest_args[@]}"}
  echo "[run_matrix] $name: tests passed in $((SECONDS - start)) s"
done
