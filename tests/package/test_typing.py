"""The package type-checks (mypy) and the tree lints clean (ruff), with pyproject.toml's settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_finds_no_errors_in_the_package() -> None:
    result = _run("mypy", "streamnb")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    result = _run("ruff", "check", "streamnb", "tests", "benchmarks", "scripts")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
