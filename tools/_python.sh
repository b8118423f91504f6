# The Python interpreter the shell tools run; source this file, then use "$PYTHON".
# $PYTHON when it is set, else the repository's .venv/bin/python when it exists (what
# tools/setup_env.sh creates), else the first python on PATH.
if [[ -z "${PYTHON:-}" ]]; then
  PYTHON="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/python"
  [[ -x "$PYTHON" ]] || PYTHON=python
fi
