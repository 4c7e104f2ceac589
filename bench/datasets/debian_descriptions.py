"""A multilingual known-item set from Debian's translated package descriptions.

Debian translates the descriptions of its packages: each translation has a short
description (one line) and a long one (a paragraph or more). A document is a
package's long description in one language; each document has two queries:

- ``monolingual``: its short description in the document's language;
- ``cross-lingual``: its English short description.

Each package is used in one language only, and packages whose descriptions repeat
another's (``foo``, ``foo-data``, ``foo-doc``...) are left out, so each query has
exactly one right document. Packages are picked in the order of a hash of their
name: the same mirror snapshot gives the same set.

The translation files are fetched by apt into a temporary directory, leaving the
system's package lists alone::

    uv run python -m bench.datasets.debian_descriptions multilingual.jsonl

Each line is ``{"id", "query", "content", "language", "kind"}``; ``language`` is
the document's, as Datashare names it. Lines of one document share its ``id``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Debian's translation codes -> Datashare's language names.
LANGUAGES = {
    "de": "GERMAN",
    "fr": "FRENCH",
    "es": "SPANISH",
    "ru": "RUSSIAN",
    "pl": "POLISH",
    "pt_BR": "PORTUGUESE",
}
PER_LANGUAGE = 100
# Long descriptions shorter than this say too little to be a document.
MIN_WORDS = 40
APT_HELPER = "/usr/lib/apt/apt-helper"


def fetch_translations(lists: Path) -> dict[str, Path]:
    """Download the translation files into ``lists``; their paths by language."""
    state, cache = lists / "lists", lists / "cache"
    (state / "partial").mkdir(parents=True)
    (cache / "archives" / "partial").mkdir(parents=True)
    languages = ",".join(["en", *LANGUAGES])
    subprocess.run(
        [
            "apt-get",
            "update",
            "-qq",
            f"-o=Dir::State::Lists={state}",
            f"-o=Dir::Cache={cache}",
            f"-o=Acquire::Languages={languages}",
            "-o=Debug::NoLocking=1",
            "-o=APT::Sandbox::User=root",  # the temporary directory is root's
        ],
        check=True,
    )
    files = {}
    for code in ["en", *LANGUAGES]:
        quoted = code.replace("_", "%5f")
        # The release's own file, not its updates' (the largest).
        found = state.glob(f"*_main_i18n_Translation-{quoted}.*")
        files[code] = max(found, key=lambda path: path.stat().st_size)
    return files


def read_descriptions(path: Path) -> dict[str, tuple[str, str, str]]:
    """By package: (description md5, short description, long description)."""
    text = subprocess.run(
        [APT_HELPER, "cat-file", str(path)], check=True, capture_output=True, text=True
    ).stdout
    return {
        package: entry
        for package, entry in (_entry(s) for s in _stanzas(text))
        if entry
    }


def _stanzas(text: str) -> Iterator[str]:
    yield from (s for s in text.split("\n\n") if s.strip())


def _entry(stanza: str) -> tuple[str, tuple[str, str, str] | None]:
    package = md5 = short = ""
    long_lines: list[str] = []
    in_description = False
    for line in stanza.splitlines():
        if line.startswith(" ") and in_description:
            body = line[1:]
            long_lines.append("" if body == "." else body)
        elif line.startswith("Package: "):
            package = line.split(": ", 1)[1]
        elif line.startswith("Description-md5: "):
            md5 = line.split(": ", 1)[1]
        elif line.startswith("Description-"):
            in_description = True
            short = line.split(": ", 1)[1].strip() if ": " in line else ""
    long = "\n".join(long_lines).strip()
    return package, (md5, short, long) if package and short and long else None


def build(files: dict[str, Path]) -> list[dict]:
    english = read_descriptions(files["en"])
    translated = {code: read_descriptions(files[code]) for code in LANGUAGES}
    picked: dict[str, list[list[dict]]] = {code: [] for code in LANGUAGES}
    seen: set[str] = set()  # English short and long descriptions already used
    by_hash = sorted(english, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    for package in by_hash:
        md5, en_short, en_long = english[package]
        keys = {en_short.lower(), en_long[:120].lower()}
        if keys & seen or len(en_long.split()) < MIN_WORDS:
            continue
        # The language that has the fewest documents yet and translates it.
        for code in sorted(picked, key=lambda c: len(picked[c])):
            entry = translated[code].get(package)
            if len(picked[code]) >= PER_LANGUAGE or entry is None:
                continue
            t_md5, short, long = entry
            if t_md5 != md5 or long == en_long or short == en_short:
                continue  # out of date, or not translated
            seen |= keys
            picked[code].append(_lines(package, code, short, long, en_short))
            break
        if all(len(p) >= PER_LANGUAGE for p in picked.values()):
            break
    return [line for code in LANGUAGES for doc in picked[code] for line in doc]


def _lines(package: str, code: str, short: str, long: str, en_short: str) -> list[dict]:
    common = {"id": f"{code}/{package}", "content": long, "language": LANGUAGES[code]}
    return [
        {**common, "query": short, "kind": "monolingual"},
        {**common, "query": en_short, "kind": "cross-lingual"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the JSON-lines file to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as lists:
        lines = build(fetch_translations(Path(lists)))
    with args.output.open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    documents = len({line["id"] for line in lines})
    print(f"{documents} documents, {len(lines)} queries written to {args.output}")


if __name__ == "__main__":
    main()
