#!/usr/bin/env bash
# The documentation site (MkDocs, API from the docstrings, the notebooks):
#   bash scripts/docs.sh          # serve it on http://127.0.0.1:8000 while you edit
#   bash scripts/docs.sh build    # build it into site/, warnings as errors
#   bash scripts/docs.sh execute  # run the tutorials into build/executed/: the site then shows their outputs
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
case "${1:-serve}" in
  build) exec .venv/bin/python -m mkdocs build --strict ;;
  execute) shift; exec .venv/bin/python scripts/execute_notebooks.py "$@" ;;
  serve) exec .venv/bin/python -m mkdocs serve --dev-addr 127.0.0.1:8000 ;;
  *) echo "usage: bash scripts/docs.sh [serve|build|execute [NAME.ipynb ...]]" >&2; exit 2 ;;
esac
