"""Nodes of GNU manuals in Info format, each found by its menu description.

A document is a node's text, without its header, its title and its menu; its query
is the description its parent's menu gives it (``* Invoking m4:: Invoking m4``
gives nothing, ``* Quoted strings:: Quoting input to m4`` gives "Quoting input to
m4"). Nodes of indices and licences are left out.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from bench.datasets import debian

# Debian main packages that ship Info manuals.
PACKAGES = (
    "bash-doc",
    "bc",
    "coreutils",
    "diffutils",
    "ed",
    "findutils",
    "gnupg",
    "grep",
    "gzip",
    "libtasn1-doc",
    "m4",
    "nano",
    "nettle-dev",
    "screen",
    "sed",
    "time",
    "wget",
)
INFO = Path("usr/share/info")

_HEADER = re.compile(r"^File: (?P<file>[^,]+),\s+Node: (?P<node>[^,\n]+)")
# "* Node::  Description" or "* Entry: Node.  Description", continued on indented lines.
_MENU_ENTRY = re.compile(
    r"^\* (?:(?P<node>[^:\n]+)::|[^:\n]+:\s+(?P<target>[^.,\t\n]+)[.,\t])"
    r"[ \t]*(?P<description>.*(?:\n[ \t]+\S.*)*)",
    re.MULTILINE,
)
_TITLE_RULE = re.compile(r"^[*=\-.]{3,}$")
_LEFT_OUT = re.compile(r"index|licen[cs]e|copying", re.IGNORECASE)


def nodes(text: str) -> Iterator[tuple[str, str]]:
    """(node name, body) of each node of an Info file's text."""
    for chunk in text.split("\x1f\n")[1:]:
        header, _, body = chunk.partition("\n")
        match = _HEADER.match(header)
        if match:
            yield match["node"].strip(), body


def menu_descriptions(body: str) -> dict[str, str]:
    """The description of each node the body's menu lists, by node name."""
    _, found, menu = body.partition("* Menu:")
    if not found:
        return {}
    return {
        (m["node"] or m["target"]).strip(): " ".join(m["description"].split())
        for m in _MENU_ENTRY.finditer(menu)
    }


def node_text(body: str) -> str:
    """The body without its menu and its title (the line over a rule of * = - .)."""
    body = body.partition("* Menu:")[0]
    lines = body.strip("\n").splitlines()
    if len(lines) > 1 and _TITLE_RULE.match(lines[1].strip()):
        lines = lines[2:]
    return debian.clean("\n".join(lines))


def manual_items(manual: str, text: str) -> list[debian.Item]:
    """The items of one manual: its nodes that some menu describes."""
    bodies = dict(nodes(text))
    described: dict[str, str] = {}
    for body in bodies.values():
        for node, description in menu_descriptions(body).items():
            described.setdefault(node, description)
    return [
        debian.Item(f"info:{manual}:{node}", described[node], node_text(body))
        for node, body in bodies.items()
        if node in described and not _LEFT_OUT.search(node)
    ]


def manual_texts(info: Path) -> Iterator[tuple[str, str]]:
    """(manual, text) of each manual, its split files (x.info-1, ...) joined."""
    parts: dict[str, list[Path]] = {}
    for path in sorted(info.glob("*.info*.gz")):
        manual = path.name.split(".info")[0]
        parts.setdefault(manual, []).append(path)
    for manual, paths in sorted(parts.items()):
        paths.sort(key=lambda p: (len(p.name), p.name))  # x.info, x.info-1, x.info-2
        yield manual, "".join(_decoded(gzip.decompress(p.read_bytes())) for p in paths)


def _decoded(data: bytes) -> str:
    # Older manuals are in Latin-1 (an Info file's "coding:" line says so, not always).
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def build(cache: Path) -> list[debian.Item]:
    info = debian.unpacked(PACKAGES, cache) / INFO
    return [item for m, text in manual_texts(info) for item in manual_items(m, text)]


if __name__ == "__main__":
    debian.main("info-nodes", __doc__, build)
