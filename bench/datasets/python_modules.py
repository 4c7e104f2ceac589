"""Python standard library modules, each found by its one-line synopsis.

A document is a module's page of the library reference (python3.11-doc), without its
title; its query is the module's synopsis, which the page's title links carry but
its text does not show (``json``: "Encode and decode the JSON format.").
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets import debian
from bench.datasets.python_docs import HTML, PACKAGE, Section, page


def module_item(name: str, html: str) -> debian.Item | None:
    """The page's item, or None when it documents no module."""
    sections = [s for s in page(html).parts if isinstance(s, Section)]
    if not sections:
        return None
    top = sections[0]
    synopses = [t.split(": ", 1) for t in top.heading_titles if ": " in t]
    if not synopses:
        return None
    module, synopsis = synopses[0]
    return debian.Item(id=f"python-module:{module}", query=synopsis, content=top.text())


def build(cache: Path) -> list[debian.Item]:
    library = debian.unpacked([PACKAGE], cache) / HTML / "library"
    items = []
    for path in sorted(library.glob("*.html")):
        item = module_item(path.stem, path.read_text(encoding="utf-8"))
        if item is not None:
            items.append(item)
    return items


if __name__ == "__main__":
    debian.main("python-modules", __doc__, build)
