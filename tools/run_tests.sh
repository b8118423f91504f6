#!/usr/bin/env bash
# Set up the environment (idempotent) and run the linter and the whole test suite,
# slow end-to-end tests included; then the compatibility matrix (tools/run_matrix.sh: the
# oldest and the newest supported torch, each in an environment of its own under .venvs/).
# Extra arguments go to pytest for the main suite (e.g. -m "not slow");
# MMPOOLFORMER_MATRIX=0 skips the matrix.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
matrix="${MMPOOLFORMER_MATRIX:-1}"
start=$SECONDS
if [[ "$matrix" != 0 ]]; then
  # The matrix's environments are set up while the main one is: their downloads (several GB
  # of torch builds) overlap its mmcv build. Their progress is printed once they are ready
  # (all of their log if they fail).
  prepare_log="$(mktemp)"
  bash tools/run_matrix.sh --prepare > "$prepare_log" 2>&1 &
  prepare=$!
fi
bash tools/setup_env.sh
echo "[run_tests] environment ready in $((SECONDS - start)) s"
if [[ "$matrix" != 0 ]]; then
  # The main suite runs alone on the machine.
  prepared=0
  wait "$prepare" || prepared=$?
  if [[ $prepared != 0 ]]; then
    cat "$prepare_log"
    echo "[run_tests] the matrix's environments could not be set up (exit $prepared)" >&2
    exit "$prepared"
  fi
  grep -E '^\[(setup_env|run_matrix)\]' "$prepare_log" || true
  rm -f "$prepare_log"
  echo "[run_tests] matrix environments ready after $((SECONDS - start)) s"
fi
.venv/bin/ruff check mmpoolformer tools tests configs demo setup.py
# Two worker processes (pytest-xdist; each with its share of the cores, tests/conftest.py),
# a test file per worker at a time: much of the suite is single-threaded (subprocess
# start-up, imports, compilation). MMPOOLFORMER_TEST_WORKERS=0 runs it in one process.
# pytest exits 5 when it collected no test: that is a failure here, as is any other non-zero.
start=$SECONDS
.venv/bin/python -m pytest tests -n "${MMPOOLFORMER_TEST_WORKERS:-2}" --dist loadfile "$@"
echo "[run_tests] main suite passed in $((SECONDS - start)) s"
if [[ "$matrix" != 0 ]]; then
  bash tools/run_matrix.sh
fi
