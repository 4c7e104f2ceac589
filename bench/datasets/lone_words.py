"""One-word queries for a known-item set: a word only one document has.

A journalist often searches a name, a number or a rare term, which the model may
know nothing of and only full-text search finds. From every tenth document of a set,
the query is one of its words of at least 7 letters that no other document of the
set has (the middle one, in sorted order). Every document of the set is written,
the others with a ``null`` query, so a search ranks the known item among all of
them. Deterministic: same set, same queries.

    uv run python -m bench.datasets.lone_words SET.jsonl OUT.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from pathlib import Path

# Letters only: numbers and identifiers would favour the full-text side.
_WORD = re.compile(r"[^\W\d_]{7,}")
EVERY = 10


def lone_word_items(items: list[dict]) -> list[dict]:
    """The set's documents, in file order, every tenth with a one-word query (when
    it has a word of its own) and the others with none."""
    documents: dict[str, dict] = {}
    for item in items:
        documents.setdefault(item["id"], item)
    words = {
        doc_id: {w.lower() for w in _WORD.findall(item["content"])}
        for doc_id, item in documents.items()
    }
    counts = collections.Counter(w for ws in words.values() for w in ws)
    lone = []
    for n, (doc_id, item) in enumerate(documents.items()):
        unique = sorted(w for w in words[doc_id] if counts[w] == 1)
        query = unique[len(unique) // 2] if unique and n % EVERY == 0 else None
        document = {k: v for k, v in item.items() if k != "kind"}
        lone.append({**document, "query": query})
    return lone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a known-item set (JSON lines)")
    parser.add_argument("out", type=Path, help="the one-word set to write")
    args = parser.parse_args()
    with args.dataset.open() as lines:
        items = [json.loads(line) for line in lines if line.strip()]
    lone = lone_word_items(items)
    with args.out.open("w") as out:
        for item in lone:
            out.write(json.dumps(item, ensure_ascii=False) + "\n")
    asked = sum(1 for item in lone if item["query"])
    print(f"{args.out}: {asked} one-word queries among {len(lone)} documents")


if __name__ == "__main__":
    main()
