#!/usr/bin/env bash
# Set up and run the page-view demo on the embedded broker.
#   bash scripts/demo.sh [demo args...]     e.g. -n 20000
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m streamnb.datagen.demo "$@"
