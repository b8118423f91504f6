#!/usr/bin/env bash
# Set up the environment (idempotent) and run the linter and the whole test suite,
# slow end-to-end tests included. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
.venv/bin/ruff check mmpoolformer tools tests configs demo setup.py
# Two worker processes (pytest-xdist; each with its share of the cores, tests/conftest.py),
# a test file per worker at a time: much of the suite is single-threaded (subprocess
# start-up, imports, compilation). MMPOOLFORMER_TEST_WORKERS=0 runs it in one process.
# pytest exits 5 when it collected no test: that is a failure here, as is any other non-zero.
.venv/bin/python -m pytest tests -n "${MMPOOLFORMER_TEST_WORKERS:-2}" --dist loadfile "$@"
