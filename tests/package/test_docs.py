"""The documentation site builds with warnings as errors, and holds the API, the concepts and the tutorials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_site_builds_strict(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    env["NO_MKDOCS_2_WARNING"] = "1"
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    core = (site / "api" / "core" / "index.html").read_text()
    assert "send_dataframe" in core and "topology" in core  # from the docstrings
    assert "Every error derives from one root" in (site / "api" / "errors" / "index.html").read_text()
    assert 'class="mermaid"' in (site / "concepts" / "index.html").read_text()
    for name in ("01_quickstart", "02_windows_explained", "05_event_time"):
        page = (site / "notebooks" / name / "index.html").read_text()
        assert "Try this" in page, name


QUICK_START = (
    "bash scripts/lab.sh           # set up, open the quick-start notebook in JupyterLab (embedded broker, no Kafka)\n"
    "bash scripts/test.sh          # set up, start a local Kafka, run the whole test suite\n"
)


def test_readme_is_the_way_in_and_links_every_guide_page() -> None:
    """README: what it is, the quick start's two commands, a short tour, links; the reference is in docs/."""
    readme = (ROOT / "README.md").read_text()
    assert f"```bash\n{QUICK_START}```" in readme
    assert len(readme.splitlines()) <= 150
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md") if p.name != "index.md")
    assert len(pages) >= 15
    for name in pages:
        assert f"(docs/{name})" in readme, f"README does not link docs/{name}"
        assert f": {name}" in nav, f"mkdocs.yml's nav leaves out {name}"
    faust = (ROOT / "docs" / "faust.md").read_text()
    assert "## Differences from Faust, on purpose" in faust and "## Migrating from Faust" in faust
