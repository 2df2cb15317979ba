#!/usr/bin/env bash
# The documentation site (MkDocs, API from the docstrings, the notebooks):
#   bash scripts/docs.sh          # serve it on http://127.0.0.1:8000 while you edit
#   bash scripts/docs.sh build    # build it into site/, warnings as errors
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ "${1:-serve}" = "build" ]; then
  exec .venv/bin/python -m mkdocs build --strict
fi
exec .venv/bin/python -m mkdocs serve --dev-addr 127.0.0.1:8000
