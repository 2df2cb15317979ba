"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

* Executed notebooks: when ``scripts/execute_notebooks.py`` left an executed
  copy of a tutorial in ``build/executed/`` (or in ``$STREAMNB_EXECUTED_NOTEBOOKS``),
  the site renders that copy, with its outputs, instead of the committed
  notebook (committed without outputs).
* Links between guide pages: the guide pages were README's sections, which
  link to each other as ``(#section)``; such a link to a heading of another
  page becomes ``(page.md#section)``.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Any

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_ANCHOR_LINK = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")
_ANCHORS: dict[str, str] = {}


def executed_folder() -> Path:
    """Where executed copies of the notebooks are looked for."""
    return Path(os.environ.get("STREAMNB_EXECUTED_NOTEBOOKS") or ROOT / "build" / "executed")


def headings(markdown: str) -> list[str]:
    """The slugs of a Markdown text's headings (outside code blocks)."""
    slugs, fenced = [], False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        found = None if fenced else _HEADING.match(line)
        if found:
            slugs.append(slugify(re.sub(r"[`*]", "", found.group(1)), "-"))
    return slugs


def on_files(files: Any, config: Any) -> Any:
    executed = executed_folder()
    _ANCHORS.clear()
    for file in files:
        src = file.src_uri
        if src.endswith(".ipynb") and (executed / posixpath.basename(src)).exists():
            file.abs_src_path = str(executed / posixpath.basename(src))
        elif src.endswith(".md") and file.abs_src_path:
            for slug in headings(Path(file.abs_src_path).read_text(encoding="utf-8")):
                _ANCHORS.setdefault(slug, src)
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    here = page.file.src_uri
    own = set(headings(markdown))

    def link(found: re.Match[str]) -> str:
        slug = found.group(1)
        target = _ANCHORS.get(slug)
        if slug in own or target is None or target == here:
            return found.group(0)
        relative = posixpath.relpath(target, posixpath.dirname(here) or ".")
        return f"]({relative}#{slug})"

    return _ANCHOR_LINK.sub(link, markdown)
