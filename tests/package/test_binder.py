"""What a Binder launch does, in a fresh virtual environment: install, then run the quick start.

Binder (repo2docker) installs ``binder/requirements.txt`` and then runs
``binder/postBuild`` from the repository root. This test does the same in a
new venv (from a copy of the checkout, so no build files land in it; PyPI
must be reachable) and executes ``notebooks/01_quickstart.ipynb`` with a
kernel of that venv, checking the kernel imported the *installed* streamnb.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP = {".git", ".venv", ".kafka", ".mypy_cache", ".pytest_cache", ".hypothesis", "screenshots", "build", "dist"}

pytestmark = pytest.mark.slow

RUNNER = textwrap.dedent(
    """
    import json, sys
    import nbformat
    from ipykernel.kernelspec import install
    from nbclient import NotebookClient

    notebook, report = sys.argv[1], sys.argv[2]
    install(prefix=sys.prefix, kernel_name="streamnb-binder")  # a kernel of this venv
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json, sys, streamnb; print(json.dumps({'python': sys.executable, 'streamnb': streamnb.__file__}))"
    ))
    NotebookClient(nb, timeout=180, kernel_name="streamnb-binder").execute()
    nbformat.write(nb, notebook)
    last = [o for o in nb.cells[-1].outputs if o.get("name") == "stdout"][-1]["text"]
    with open(report, "w") as f:
        f.write(last)
    """
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_binder_setup_runs_the_quickstart(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT, repo, ignore=lambda _d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ), 120)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    python = str(bin_dir / "python")

    # What repo2docker does: requirements first, then postBuild from the repository root.
    _run([python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, env, 600)
    _run(["bash", "binder/postBuild"], repo, env, 600)

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(repo / "notebooks" / "01_quickstart.ipynb", work)
    (work / "runner.py").write_text(RUNNER)
    _run([python, "runner.py", "01_quickstart.ipynb", "report.json"], work, env, 400)

    report = json.loads((work / "report.json").read_text())
    assert report["python"].startswith(str(venv)), report  # the venv's kernel...
    assert report["streamnb"].startswith(str(venv)) and "site-packages" in report["streamnb"], report  # ...and install
    nb = nbformat.read(work / "01_quickstart.ipynb", as_version=4)  # joins multi-line texts
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "sent 300 page views" in text
