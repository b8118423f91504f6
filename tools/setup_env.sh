#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in ./.venv.
#
#   bash tools/setup_env.sh [--torch cpu|cuda|cuda:cuXYZ|index|existing]
#                           [--torch-version X.Y.Z] [--python X.Y] [--numpy 1|2]
#                           [--mmcv full|lite]
#
# --torch (or MMPOOLFORMER_TORCH=...) chooses the build of torch:
#   cpu         the CPU build (the default). When the configured pip index resolves torch
#               to another build (PyPI's Linux wheel is the CUDA one), it comes from
#               PyTorch's CPU index, https://download.pytorch.org/whl/cpu.
#   cuda        the CUDA build of the configured index (PyPI: its default CUDA version).
#   cuda:cu126  the CUDA 12.6 build, from https://download.pytorch.org/whl/cu126 (any cuXYZ).
#   index       whatever build the configured index serves (PyPI on Linux: a CUDA build,
#               which also runs on a machine without a GPU). mmcv gets its CUDA kernels only
#               where that torch sees a GPU (or FORCE_CUDA=1), as with `existing`.
#   existing    the torch the environment already has, whatever its version and build.
#               A new venv then sees the packages of the interpreter that creates it
#               (--system-site-packages); MMPOOLFORMER_VENV may also name an environment
#               of yours, e.g. a conda env.
# MMPOOLFORMER_TORCH_INDEX=URL takes torch from that index instead. Without --torch and
# MMPOOLFORMER_TORCH, a venv keeps the choice it was set up with.
#
# --torch-version (or MMPOOLFORMER_TORCH_VERSION) chooses the release of torch, within the
# supported range of mmpoolformer/version.py (2.1 to 2.14); default 2.13.0. --python X.Y
# (or MMPOOLFORMER_PYTHON) creates the venv with that Python (python X.Y on PATH, else
# pyenv's newest X.Y); --numpy 2 (or MMPOOLFORMER_NUMPY) installs numpy 2 instead of 1.x.
# --mmcv lite (or MMPOOLFORMER_MMCV) installs mmcv-lite 2.1.0 (no compiled ops) and neither
# mmdet nor mmseg: the backbones alone, without a build; the default `full` is mmcv with its
# ops, mmdet and mmseg. A venv keeps the torch release, Python, numpy and mmcv it was set up
# with; another Python needs another venv (MMPOOLFORMER_VENV). docs/compatibility.md lists
# the tested combinations.
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
# same torch install it in seconds. torch >= 2.14's headers require C++20, and mmcv 2.1.0's
# setup.py passes -std=c++17: for such a torch the script builds mmcv from its source
# archive with -std=c++20 instead (nothing else changes; the wheel is kept in the same
# cache folder). The last step runs mmcv's ops on every device torch can use and compares
# them with known values.
#
# Idempotent: the environment is stamped with a hash of this script, check_env.py,
# requirements/, setup.py and the torch choice; when nothing changed, a run returns at once.
# Also read: MMPOOLFORMER_VENV (default ./.venv), PYTHON (the interpreter that creates
# the venv, default python3), MAX_JOBS (parallel compile jobs, default: all cores).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USAGE="usage: bash tools/setup_env.sh [--torch cpu|cuda|cuda:cuXYZ|index|existing]\
 [--torch-version X.Y.Z] [--python X.Y] [--numpy 1|2] [--mmcv full|lite]"
CHOICE="${MMPOOLFORMER_TORCH:-}"
TORCH_VERSION="${MMPOOLFORMER_TORCH_VERSION:-}"
PY_VERSION="${MMPOOLFORMER_PYTHON:-}"
NUMPY="${MMPOOLFORMER_NUMPY:-}"
MMCV="${MMPOOLFORMER_MMCV:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --torch|--torch-version|--python|--numpy|--mmcv)
      if [[ $# -lt 2 ]]; then echo "ERROR: $1 needs a value; $USAGE" >&2; exit 2; fi
      case "$1" in
        --torch) CHOICE="$2" ;;
        --torch-version) TORCH_VERSION="$2" ;;
        --python) PY_VERSION="$2" ;;
        --numpy) NUMPY="$2" ;;
        --mmcv) MMCV="$2" ;;
      esac
      shift 2 ;;
    --torch=*) CHOICE="${1#--torch=}"; shift ;;
    --torch-version=*) TORCH_VERSION="${1#--torch-version=}"; shift ;;
    --python=*) PY_VERSION="${1#--python=}"; shift ;;
    --numpy=*) NUMPY="${1#--numpy=}"; shift ;;
    --mmcv=*) MMCV="${1#--mmcv=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "ERROR: unknown argument '$1'; $USAGE" >&2; exit 2 ;;
  esac
done

VENV="${MMPOOLFORMER_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mmpoolformer-installed"
CHOSEN="$VENV/.mmpoolformer-torch"
CHOSEN_VERSIONS="$VENV/.mmpoolformer-versions"  # torch release, numpy major, mmcv kind
PINS="$VENV/.mmpoolformer-pins.txt"
CHECK="$ROOT/tools/misc/check_env.py"
if [[ -z "$CHOICE" ]]; then
  CHOICE="$(cat "$CHOSEN" 2>/dev/null || echo cpu)"
fi
if [[ ! "$CHOICE" =~ ^(cpu|cuda|cuda:cu[0-9]{3,}|index|existing)$ ]]; then
  echo "ERROR: --torch must be cpu, cuda, cuda:cuXYZ (e.g. cuda:cu126), index or existing," \
    "got '$CHOICE'" >&2
  exit 2
fi
if [[ -f "$CHOSEN_VERSIONS" ]]; then
  read -r kept_torch kept_numpy kept_mmcv < "$CHOSEN_VERSIONS"
  TORCH_VERSION="${TORCH_VERSION:-$kept_torch}"
  NUMPY="${NUMPY:-$kept_numpy}"
  MMCV="${MMCV:-$kept_mmcv}"
fi
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
NUMPY="${NUMPY:-1}"
MMCV="${MMCV:-full}"
if [[ ! "$NUMPY" =~ ^[12]$ ]]; then
  echo "ERROR: --numpy must be 1 or 2, got '$NUMPY'" >&2
  exit 2
fi
if [[ ! "$MMCV" =~ ^(full|lite)$ ]]; then
  echo "ERROR: --mmcv must be full (mmcv with its ops, mmdet, mmseg) or lite (mmcv-lite," \
    "the backbones only), got '$MMCV'" >&2
  exit 2
fi
# The release must be in mmpoolformer's supported range (read without torch).
"$PY" "$CHECK" version "$TORCH_VERSION" || exit 2
if [[ -n "$PY_VERSION" ]]; then
  if [[ ! "$PY_VERSION" =~ ^3\.[0-9]+$ ]]; then
    echo "ERROR: --python takes a version such as 3.9, got '$PY_VERSION'" >&2
    exit 2
  fi
  # python X.Y on PATH (a pyenv shim there may not run it), else pyenv's newest X.Y
  PY=""
  pyenv_root="$(pyenv root 2>/dev/null || true)"
  for candidate in "$(command -v "python$PY_VERSION" || true)" \
      $( (ls -d "$pyenv_root/versions/$PY_VERSION".*/bin/python 2>/dev/null || true) \
         | sort -rV); do
    if [[ -n "$candidate" ]] && "$candidate" -c 'import sys
sys.exit("%d.%d" % sys.version_info[:2] != sys.argv[1])' "$PY_VERSION" >/dev/null 2>&1; then
      PY="$candidate"
      break
    fi
  done
  if [[ -z "$PY" ]]; then
    echo "ERROR: --python $PY_VERSION: no python$PY_VERSION on PATH and none under pyenv;" \
      "install it (e.g. pyenv install $PY_VERSION) or give another version" >&2
    exit 2
  fi
  if [[ -x "$VENV/bin/python" ]]; then
    has="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [[ "$has" != "$PY_VERSION" ]]; then
      echo "ERROR: --python $PY_VERSION: $VENV has Python $has; remove it or set" \
        "MMPOOLFORMER_VENV to another folder" >&2
      exit 2
    fi
  fi
fi
TORCH_INDEX="${MMPOOLFORMER_TORCH_INDEX:-}"

digest() {
  { cat "$ROOT/tools/setup_env.sh" "$CHECK" "$ROOT"/requirements/*.txt "$ROOT/setup.py" \
      "$ROOT/mmpoolformer/version.py"
    echo "torch=$CHOICE index=$TORCH_INDEX version=$TORCH_VERSION numpy=$NUMPY mmcv=$MMCV"
  } \
    | sha256sum | cut -d' ' -f1
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
# The chosen torch release and numpy, as constraints next to the tested pins (with
# `existing`, torch is pinned once it is known: whatever is installed stays).
if [[ "$NUMPY" == 1 ]]; then numpy_pin='numpy<2'; else numpy_pin='numpy>=2,<3'; fi
pin_torch() { printf '%s\n%s\n' "$1" "$numpy_pin" > "$PINS"; }
if [[ "$CHOICE" == existing ]]; then pin_torch ''; else pin_torch "torch==$TORCH_VERSION"; fi
pip_install() {
  "$VPY" -m pip install --disable-pip-version-check -q \
    -c "$ROOT/requirements/constraints.txt" -c "$PINS" "$@"
}
check() { "$VPY" "$CHECK" "$@"; }

# Whether the configured index resolves the torch release to the CPU build (a '+cpu'
# version), from pip's resolution report: no wheel is downloaded.
index_serves_cpu_torch() {
  local report rc
  report="$(mktemp)"
  pip_install --dry-run --ignore-installed --no-deps --report "$report" \
    "torch==$TORCH_VERSION" >/dev/null 2>&1
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
pip_install numpy opencv-python mmengine

# torch: the chosen build, verified after the install.
if [[ "$CHOICE" == existing ]]; then
  if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
    echo "ERROR: --torch existing: $VPY cannot import torch; install torch into that" \
      "environment first, or choose --torch cpu or --torch cuda" >&2
    exit 1
  fi
elif ! check torch --torch "$CHOICE" --version "$TORCH_VERSION" >/dev/null 2>&1; then
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
  # Another build of the same torch release would count as installed already.
  "$VPY" -m pip uninstall -y -q torch >/dev/null 2>&1 || true
  echo "[setup_env] installing torch $TORCH_VERSION (--torch $CHOICE${index_args[1]:+, from ${index_args[1]}})"
  pip_install ${index_args[@]+"${index_args[@]}"} "torch==$TORCH_VERSION"
fi
version_check=()
if [[ "$CHOICE" != existing ]]; then version_check=(--version "$TORCH_VERSION"); fi
torch_build="$(check torch --torch "$CHOICE" ${version_check[@]+"${version_check[@]}"})"
echo "[setup_env] $torch_build"
pin_torch "torch==$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "$CHOICE" > "$CHOSEN"
echo "$TORCH_VERSION $NUMPY $MMCV" > "$CHOSEN_VERSIONS"

if [[ "$MMCV" == lite ]]; then
  # The backbones alone: mmcv's Python parts, no compiled ops, no mmdet or mmseg.
  "$VPY" -m pip uninstall -y -q mmcv mmdet mmsegmentation >/dev/null 2>&1 || true
  pip_install mmcv-lite==2.1.0 psutil -r "$ROOT/requirements/tests.txt"
  pip_install --no-deps --no-build-isolation -e "$ROOT"
  "$VPY" -c 'import mmcv, mmpoolformer, torch
print(f"[setup_env] torch {torch.__version__}, mmcv-lite {mmcv.__version__} (no compiled ops; "
      f"no mmdet or mmseg), mmpoolformer {mmpoolformer.__version__}")'
  echo "$want" > "$STAMP"
  exit 0
fi

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
    # No debug information in the ops (Python's build flags ask for -g): the same -O3 code,
    # built in about two thirds of the time. A CFLAGS of your own is kept.
    export CFLAGS="${CFLAGS:--g0}"
    "$VPY" -m pip uninstall -y -q mmcv >/dev/null 2>&1 || true
    if [[ "$MMCV_CXX_STD" == c++17 ]]; then
      echo "[setup_env] installing mmcv 2.1.0 with its ops for $MMCV_BUILD_DEVICE" \
        "(first build on a machine: ~10 min)"
      pip_install --no-build-isolation mmcv==2.1.0
    else
      wheels="${PIP_CACHE_DIR:-$(mktemp -d)}/wheels-$MMCV_CXX_STD"
      if ! ls "$wheels"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        echo "[setup_env] building mmcv 2.1.0 with its ops for $MMCV_BUILD_DEVICE from its" \
          "source archive with -std=$MMCV_CXX_STD in place of -std=c++17 (this torch's" \
          "headers require it; first build on a machine: ~12 min)"
        src="$(mktemp -d)"
        "$VPY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: \
          --no-build-isolation -d "$src" mmcv==2.1.0
        tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
        sed -i "s/-std=c++17/-std=$MMCV_CXX_STD/g" "$src/mmcv-2.1.0/setup.py"
        "$VPY" -m pip wheel --disable-pip-version-check -q --no-deps --no-build-isolation \
          -w "$wheels" "$src/mmcv-2.1.0"
        rm -rf "$src"
      fi
      pip_install "$wheels"/mmcv-2.1.0-*.whl
    fi
  )
fi

pip_install -r "$ROOT/requirements/runtime.txt"
pip_install --no-build-isolation -e "$ROOT[tests]"

# A broken mmcv build (no compiled ops, or none for the GPU) must fail here, not deep
# inside a detector.
report="$(check ops --torch "$CHOICE")"
echo "[setup_env] $report"
echo "$want" > "$STAMP"
