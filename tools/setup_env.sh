#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in ./.venv.
#
#   bash tools/setup_env.sh [--torch cpu|cuda|cuda:cuXYZ|existing]
#
# --torch (or MMPOOLFORMER_TORCH=...) chooses the build of torch 2.13.0:
#   cpu         the CPU build (the default). When the configured pip index resolves torch
#               to another build (PyPI's Linux wheel is the CUDA one), it comes from
#               PyTorch's CPU index, https://download.pytorch.org/whl/cpu.
#   cuda        the CUDA build of the configured index (PyPI: its default CUDA version).
#   cuda:cu126  the CUDA 12.6 build, from https://download.pytorch.org/whl/cu126 (any cuXYZ).
#   existing    the torch the environment already has, whatever its version and build.
#               A new venv then sees the packages of the interpreter that creates it
#               (--system-site-packages); MMPOOLFORMER_VENV may also name an environment
#               of yours, e.g. a conda env.
# MMPOOLFORMER_TORCH_INDEX=URL takes torch from that index instead. Without --torch and
# MMPOOLFORMER_TORCH, a venv keeps the choice it was set up with.
#
# With a CUDA torch (for `existing`: a CUDA torch that sees a GPU, or FORCE_CUDA=1), mmcv
# is compiled with its CUDA kernels: FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST from the visible
# GPUs unless set, and the CUDA toolkit of CUDA_HOME (else of the nvcc on PATH, else
# /usr/local/cuda), whose CUDA major.minor must be torch's. When one of these is missing
# the script stops before building, with one line that says what to install or set
# (tools/misc/check_env.py makes the checks).
#
# mmcv 2.1.0 has no wheel for torch 2.13, so it is built from its source release with its
# C++ ops (RoIAlign, NMS, ...): ~10 minutes on 2 cores the first time. pip caches the wheel
# per torch build (under `pip cache dir`/mmpoolformer/), so later environments with the
# same torch install it in seconds. The last step runs mmcv's ops on every device torch
# can use and compares them with known values.
#
# Idempotent: the environment is stamped with a hash of this script, check_env.py,
# requirements/, setup.py and the torch choice; when nothing changed, a run returns at once.
# Also read: MMPOOLFORMER_VENV (default ./.venv), PYTHON (the interpreter that creates
# the venv, default python3), MAX_JOBS (parallel compile jobs, default: all cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE="usage: bash tools/setup_env.sh [--torch cpu|cuda|cuda:cuXYZ|existing]"
CHOICE="${MMPOOLFORMER_TORCH:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --torch)
      if [[ $# -lt 2 ]]; then echo "ERROR: --torch needs a value; $USAGE" >&2; exit 2; fi
      CHOICE="$2"; shift 2 ;;
    --torch=*) CHOICE="${1#--torch=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "ERROR: unknown argument '$1'; $USAGE" >&2; exit 2 ;;
  esac
done

VENV="${MMPOOLFORMER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mmpoolformer-installed"
CHOSEN="$VENV/.mmpoolformer-torch"
CHECK="$ROOT/tools/misc/check_env.py"
if [[ -z "$CHOICE" ]]; then
  CHOICE="$(cat "$CHOSEN" 2>/dev/null || echo cpu)"
fi
if [[ ! "$CHOICE" =~ ^(cpu|cuda|cuda:cu[0-9]{3,}|existing)$ ]]; then
  echo "ERROR: --torch must be cpu, cuda, cuda:cuXYZ (e.g. cuda:cu126) or existing, got '$CHOICE'" >&2
  exit 2
fi
TORCH_INDEX="${MMPOOLFORMER_TORCH_INDEX:-}"

digest() {
  { cat "$ROOT/tools/setup_env.sh" "$CHECK" "$ROOT"/requirements/*.txt "$ROOT/setup.py"
    echo "torch=$CHOICE index=$TORCH_INDEX"; } | sha256sum | cut -d' ' -f1
}
want="$(digest)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  echo "[setup_env] $VENV is up to date (--torch $CHOICE)"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  if [[ "$CHOICE" == existing ]]; then
    echo "[setup_env] creating $VENV (it sees the packages of $PY)"
    "$PY" -m venv --system-site-packages "$VENV"
  else
    echo "[setup_env] creating $VENV"
    "$PY" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
pip_install() {
  "$VPY" -m pip install --disable-pip-version-check -q \
    -c "$ROOT/requirements/constraints.txt" "$@"
}
check() { "$VPY" "$CHECK" "$@"; }

# Whether the configured index resolves torch==2.13.0 to the CPU build (a '+cpu' version),
# from pip's resolution report: no wheel is downloaded.
index_serves_cpu_torch() {
  local report rc
  report="$(mktemp)"
  pip_install --dry-run --ignore-installed --no-deps --report "$report" torch==2.13.0 \
    >/dev/null 2>&1
  "$VPY" -c 'import json, sys
version = json.load(open(sys.argv[1]))["install"][0]["metadata"]["version"]
sys.exit(not version.endswith("+cpu"))' "$report" 2>/dev/null
  rc=$?
  rm -f "$report"
  return $rc
}

pip_install -U "pip>=24"
pip_install -r "$ROOT/requirements/build.txt"
# numpy, opencv and mmengine first so that mmcv's build finds them already satisfied.
pip_install "numpy<2" opencv-python mmengine

# torch: the chosen build, verified after the install.
if [[ "$CHOICE" == existing ]]; then
  if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
    echo "ERROR: --torch existing: $VPY cannot import torch; install torch into that" \
      "environment first, or choose --torch cpu or --torch cuda" >&2
    exit 1
  fi
elif ! check torch --torch "$CHOICE" >/dev/null 2>&1; then
  if [[ "$CHOICE" == cuda* ]]; then
    check nvcc --torch "$CHOICE"  # before a download of several GB
  fi
  index_args=()
  if [[ -n "$TORCH_INDEX" ]]; then
    index_args=(--index-url "$TORCH_INDEX")
  elif [[ "$CHOICE" == cuda:* ]]; then
    index_args=(--index-url "https://download.pytorch.org/whl/${CHOICE#cuda:}")
  elif [[ "$CHOICE" == cpu ]] && ! index_serves_cpu_torch; then
    index_args=(--index-url https://download.pytorch.org/whl/cpu)
  fi
  # Another build of torch 2.13.0 would count as installed already.
  "$VPY" -m pip uninstall -y -q torch >/dev/null 2>&1 || true
  echo "[setup_env] installing torch 2.13.0 (--torch $CHOICE${index_args[1]:+, from ${index_args[1]}})"
  pip_install ${index_args[@]+"${index_args[@]}"} torch==2.13.0
fi
torch_build="$(check torch --torch "$CHOICE")"
echo "[setup_env] $torch_build"
echo "$CHOICE" > "$CHOSEN"

# Is the installed mmcv usable with this torch? Else build it; `check build` stops here,
# before compiling, when CUDA kernels are wanted but cannot be compiled.
if ! check ops --torch "$CHOICE" --quiet >/dev/null 2>&1; then
  build_env="$(check build --torch "$CHOICE")"
  (
    eval "$build_env"
    # pip keys the wheels it builds by the source URL only: one cache per torch build.
    if cache="$("$VPY" -m pip cache dir 2>/dev/null)" && [[ -n "$cache" ]]; then
      export PIP_CACHE_DIR="$cache/mmpoolformer/mmcv-$MMCV_BUILD_KEY"
    fi
    export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
    "$VPY" -m pip uninstall -y -q mmcv >/dev/null 2>&1 || true
    echo "[setup_env] installing mmcv 2.1.0 with its ops for $MMCV_BUILD_DEVICE" \
      "(first build on a machine: ~10 min)"
    pip_install --no-build-isolation mmcv==2.1.0
  )
fi

pip_install -r "$ROOT/requirements/runtime.txt"
pip_install --no-build-isolation -e "$ROOT[tests]"

# A broken mmcv build (no compiled ops, or none for the GPU) must fail here, not deep
# inside a detector.
report="$(check ops --torch "$CHOICE")"
echo "[setup_env] $report"
echo "$want" > "$STAMP"
