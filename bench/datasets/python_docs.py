"""The sections of a page of Python's HTML documentation (Debian's python3.11-doc)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from bench.datasets.debian import clean

PACKAGE = "python3.11-doc"
HTML = Path("usr/share/doc/python3.11/html")

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = _HEADINGS | {"p", "div", "pre", "li", "dt", "dd", "tr", "br", "section"}
_SKIPPED = {"script", "style"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "wbr", "col", "area", "base"}


@dataclass
class Section:
    """A ``<section>``: its heading, its link titles, and its text and subsections."""

    heading: str = ""
    # title="..." of the heading's links: a module page's is "name: synopsis".
    heading_titles: list[str] = field(default_factory=list)
    parts: list[str | Section] = field(default_factory=list)

    def own_text(self) -> str:
        """Its text before and between its subsections, without its heading."""
        return clean("".join(p for p in self.parts if isinstance(p, str)))

    def text(self) -> str:
        """Its text with its subsections' (their headings included)."""
        return clean("".join(_full(p) for p in self.parts))

    def walk(self):
        yield self
        for part in self.parts:
            if isinstance(part, Section):
                yield from part.walk()


def _full(part: str | Section) -> str:
    if isinstance(part, str):
        return part
    return f"\n{part.heading}\n{part.text()}\n"


class _Parser(HTMLParser):
    """Sections of the page's main ``<div class="body">``; permalinks (¶) left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Section()
        self._sections = [self.root]
        self._depth = 0  # open elements inside the body; 0: outside it
        self._skip_depth = 0  # open elements inside a skipped one
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if self._depth == 0:
            if tag == "div" and "body" in (a.get("class") or "").split():
                self._depth = 1
            return
        if tag not in _VOID:
            self._depth += 1
        if self._skip_depth:
            self._skip_depth += tag not in _VOID
            return
        if tag in _SKIPPED or "headerlink" in (a.get("class") or "").split():
            self._skip_depth = 1
            return
        if tag == "section":
            section = Section()
            self._sections[-1].parts.append(section)
            self._sections.append(section)
        elif tag in _HEADINGS and not self._sections[-1].heading:
            self._heading = []
        elif tag == "a" and self._heading is not None and a.get("title"):
            self._sections[-1].heading_titles.append(a["title"])
        elif tag in _BLOCKS:
            self._text("\n")

    def handle_endtag(self, tag):
        if self._depth == 0 or tag in _VOID:
            return
        self._depth -= 1
        if self._skip_depth:
            self._skip_depth -= 1
            return
        if tag == "section" and len(self._sections) > 1:
            self._sections.pop()
        elif tag in _HEADINGS and self._heading is not None:
            self._sections[-1].heading = clean(" ".join("".join(self._heading).split()))
            self._heading = None
        elif tag in _BLOCKS:
            self._text("\n")

    def handle_data(self, data):
        if self._depth and not self._skip_depth:
            self._text(data)

    def _text(self, text: str) -> None:
        if self._heading is not None:
            self._heading.append(text)
        else:
            self._sections[-1].parts.append(text)


def page(html: str) -> Section:
    """The page's body as a tree of sections under a root without heading."""
    parser = _Parser()
    parser.feed(html)
    parser.close()
    return parser.root
