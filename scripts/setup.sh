#!/usr/bin/env bash
# Create .venv and install streamnb into it: `bash scripts/setup.sh [test]`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "${1:-}" = "test" ]; then
  echo "== installing streamnb[test]"
  .venv/bin/python -m pip install -q -e ".[test]"
else
  echo "== installing streamnb"
  .venv/bin/python -m pip install -q -e . jupyterlab
fi
