"""What the dataset builders share: Debian packages in a cache, sampling, writing."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(
    os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "ml-worker-bench"
)
SEED = 18
# A set of a few hundred documents of a few passages each: 600 documents of at most
# 1,200 words (about 7 passages of 256 tokens) vectorize in minutes on 2 cores.
MAX_DOCUMENTS = 600
MAX_WORDS = 1200
# A known item should span passages, and a query should say more than one word.
MIN_WORDS = 120
MIN_QUERY_WORDS = 3

_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")


@dataclass(frozen=True)
class Item:
    id: str
    query: str
    content: str


def unpacked(packages: Iterable[str], cache: Path) -> Path:
    """The packages' files, downloaded and unpacked once into ``cache``."""
    debs, root = cache / "debs", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    for package in sorted(packages):
        marker = root / ".unpacked" / package
        if marker.exists():
            continue
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        (deb,) = debs.glob(f"{package}_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    return root


def clean(text: str) -> str:
    """Runs of spaces as one, paragraphs kept, no blank lines at either end."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def capped(text: str, max_words: int = MAX_WORDS) -> str:
    """The text's first ``max_words`` words, its layout kept."""
    matches = list(re.finditer(r"\S+", text))
    return text if len(matches) <= max_words else text[: matches[max_words - 1].end()]


def kept(items: Iterable[Item]) -> list[Item]:
    """Items with a long enough document and query, each query asked once, sampled.

    A query shared by two documents has no single answer: both are left out.
    """
    items = [
        i
        for i in items
        if len(i.content.split()) >= MIN_WORDS
        and len(i.query.split()) >= MIN_QUERY_WORDS
    ]
    count: dict[str, int] = {}
    for item in items:
        key = item.query.casefold()
        count[key] = count.get(key, 0) + 1
    unique = sorted(
        (i for i in items if count[i.query.casefold()] == 1), key=lambda i: i.id
    )
    if len(unique) > MAX_DOCUMENTS:
        unique = sorted(
            random.Random(SEED).sample(unique, MAX_DOCUMENTS), key=lambda i: i.id
        )
    return [Item(i.id, i.query, capped(i.content, MAX_WORDS)) for i in unique]


def write(items: list[Item], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for item in items:
            line = {"id": item.id, "query": item.query, "content": item.content}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def main(name: str, doc: str, build: Callable[[Path], list[Item]]) -> None:
    """A builder's command line: ``--out DIR`` (writes DIR/<name>.jsonl), ``--cache``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write to")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"downloaded packages (default: {DEFAULT_CACHE})",
    )
    args = parser.parse_args()
    items = kept(build(args.cache))
    path = args.out / f"{name}.jsonl"
    write(items, path)
    words = sorted(len(i.content.split()) for i in items)
    print(f"{path}: {len(items)} documents, median {words[len(words) // 2]} words")
