"""Sections of Python's tutorial, how-tos, FAQ and language reference, each found by
its heading.

A document is one section's own text (without its heading, nor its subsections,
which are documents of their own); its query is the heading: a FAQ's question ("How
do I make a Python script executable on Unix?"), a how-to's topic.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.datasets import debian
from bench.datasets.python_docs import HTML, PACKAGE, page

PARTS = ("faq", "howto", "reference", "tutorial", "using", "extending")
# A heading's section number ("6.10.2. Membership test operations") says nothing.
_NUMBER = re.compile(r"^\d+(\.\d+)*\.?\s+")


def section_items(name: str, html: str) -> list[debian.Item]:
    """The items of a page's sections below its title, ``name``-relative ids."""
    items = []
    for n, section in enumerate(page(html).walk()):
        if n < 2:  # the page's root and titled top section
            continue
        heading = _NUMBER.sub("", section.heading)
        content = section.own_text()
        items.append(debian.Item(f"python-section:{name}#{n}", heading, content))
    return items


def build(cache: Path) -> list[debian.Item]:
    html = debian.unpacked([PACKAGE], cache) / HTML
    items = []
    for part in PARTS:
        for path in sorted((html / part).glob("*.html")):
            name = f"{part}/{path.stem}"
            items.extend(section_items(name, path.read_text(encoding="utf-8")))
    return items


if __name__ == "__main__":
    debian.main("python-sections", __doc__, build)
