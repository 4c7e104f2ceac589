"""The end-to-end project both engines are held to: a Datashare-shaped index whose
known items a search must rank first, each found a different way."""

from __future__ import annotations

import random
from typing import Any

from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus, filler

N_DOCS = 240
BATCH_SIZE = 8

VECTOR_ONLY = (
    "doc-0007",
    "A kitten dozed peacefully upon the woven mat by the fireplace.",
)
KEYWORD_ONLY = ("doc-0013", "The wire reference QZ7781XK was never explained.")
DEEP_IN_LONG = (
    "The whistleblower met the journalist at the lighthouse cafe at midnight."
)
LONG_DOC = "doc-0021"
IN_ATTACHMENT = (
    "doc-0004-attachment",
    "Minutes of the closed meeting on the volcano observatory budget.",
)

# find_most_similar's arguments, and the document each query must find first: by
# meaning alone, by a rare keyword, deep in a long document, in an attachment.
SEARCH: dict[str, Any] = {
    "queries": [
        "cat sleeping on a rug",
        "QZ7781XK",
        "the whistleblower met a journalist at the lighthouse cafe",
        "volcano observatory budget meeting",
    ],
    "n_similar": 5,
}
FIRST = [VECTOR_ONLY[0], KEYWORD_ONLY[0], LONG_DOC, IN_ATTACHMENT[0]]


def _long_document() -> str:
    rng = random.Random(1)
    return " ".join([filler(rng, 150), DEEP_IN_LONG, filler(rng, 20)])


async def seed_known_items(es, project: str) -> set[str]:
    """Index the project; returns its documents' ids."""
    special = dict([VECTOR_ONLY, KEYWORD_ONLY, IN_ATTACHMENT])
    special[LONG_DOC] = _long_document()
    special["doc-0030"] = _long_document().replace(DEEP_IN_LONG, "")
    items, doc_ids = datashare_corpus(N_DOCS, special=special)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


def assert_known_items_first(results: list[list[dict]]) -> None:
    """``results`` of SEARCH: each known item first, a full page, one snippet of the
    long document showing the passage that matched."""
    assert [hits[0]["doc_id"] for hits in results] == FIRST
    assert all(len(hits) == SEARCH["n_similar"] for hits in results)
    assert results[2][0]["snippet"].count("whistleblower") == 1
