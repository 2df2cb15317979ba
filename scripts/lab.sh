#!/usr/bin/env bash
# Set up and open the quick-start notebook in JupyterLab, on the embedded broker (no Kafka).
#   bash scripts/lab.sh [jupyter lab args...]   JupyterLab on 127.0.0.1 with notebooks/01_quickstart.ipynb;
#                                               then Run > Run All Cells
#   bash scripts/lab.sh --headless              run the quick start top to bottom in a kernel
#                                               (in a temporary folder) and print its final table
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ "${1:-}" = "--headless" ]; then
  exec .venv/bin/python - notebooks/01_quickstart.ipynb <<'PY'
import shutil, sys, tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

source = Path(sys.argv[1]).resolve()
with tempfile.TemporaryDirectory(prefix="streamnb-quickstart-") as work:
    nb = nbformat.read(source, as_version=4)
    print(f"== running {source.name} (a copy, in {work})", flush=True)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": work}})
    try:
        client.execute()
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)
        sys.exit(f"!! {source.name} failed (the cell and its error are above)")
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                print(out["text"], end="")
    print(f"== {source.name}: all {sum(c.cell_type == 'code' for c in nb.cells)} code cells ran, every assertion held")
PY
fi

args=(--ServerApp.ip=127.0.0.1)
[ "$(id -u)" = "0" ] && args+=(--allow-root)
echo "== opening notebooks/01_quickstart.ipynb in JupyterLab (Run > Run All Cells; Ctrl-C to stop)"
exec .venv/bin/python -m jupyter lab "${args[@]}" "$@" notebooks/01_quickstart.ipynb
