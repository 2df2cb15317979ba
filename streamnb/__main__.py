"""``python -m streamnb``: the ``streamnb`` command (see :mod:`streamnb.cli`)."""

from __future__ import annotations

from .cli import cli

__all__: list[str] = []

if __name__ == "__main__":
    cli()
