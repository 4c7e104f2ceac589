"""Hybrid (vector + full-text) search over a project's passages, ranked by document.

Each query asks LanceDB for the best passages by vector similarity and by BM25 over
``content``, fused by reciprocal rank. Passages are then grouped into documents:
``n_similar`` counts documents, each with its best passage as a snippet.
"""

from __future__ import annotations

from collections import defaultdict
from enum import Enum

from lancedb.rerankers import RRFReranker
from lancedb.table import Table

from ml_worker.store import CONTENT, DOC_ID
from ml_worker.upkeep import tuned

# Passages fetched per requested document: several passages of one document often
# fill the top of the list, and grouping must still yield n_similar documents.
PASSAGES_PER_DOC = 5
_MIN_PASSAGES = 50

_RESULT_FIELDS = [
    DOC_ID,
    "root_id",
    "passage",
    "start",
    "end",
    CONTENT,
    "path",
    "title",
    "content_type",
    "language",
]


class SearchMode(str, Enum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    TEXT = "text"


class Scoring(str, Enum):
    BEST_PASSAGE = "best_passage"
    # The best passage, plus a decreasing share of the next ones: rewards documents
    # matching in several places.
    WEIGHTED_SUM = "weighted_sum"


def search_passages(
    table: Table, query: str, query_vector, *, mode: SearchMode, limit: int
) -> list[dict]:
    """The best passages for one query, best first, each with a ``score``."""
    if mode is SearchMode.VECTOR:
        builder = tuned(table.search(query_vector, query_type="vector"))
        score = lambda row: 1.0 - row["_distance"] / 2  # cosine distance in [0, 2]
    elif mode is SearchMode.TEXT:
        builder = table.search(query, query_type="fts", fts_columns=CONTENT)
        score = lambda row: row["_score"]
    else:
        builder = tuned(
            table.search(query_type="hybrid", fts_columns=CONTENT)
            .vector(query_vector)
            .text(query)
            .rerank(RRFReranker())
        )
        score = lambda row: row["_relevance_score"]
    rows = builder.select(_RESULT_FIELDS).limit(limit).to_list()
    for row in rows:
        row["score"] = float(score(row))
    return rows


def group_by_document(
    passages: list[dict], *, n_similar: int, scoring: Scoring
) -> list[dict]:
    """Documents ranked by their passages' scores, each with its best passage."""
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for passage in passages:
        by_doc[passage[DOC_ID]].append(passage)
    hits = []
    for doc_passages in by_doc.values():
        doc_passages.sort(key=lambda p: p["score"], reverse=True)
        best = doc_passages[0]
        if scoring is Scoring.WEIGHTED_SUM:
            score = sum(p["score"] / 2**i for i, p in enumerate(doc_passages))
        else:
            score = best["score"]
        hits.append(_hit(best, score))
    hits.sort(key=lambda h: h["score"], reverse=True)
    return hits[:n_similar]


def _hit(best: dict, score: float) -> dict:
    return {
        "doc_id": best[DOC_ID],
        "root_id": best["root_id"],
        "score": score,
        "snippet": best[CONTENT],
        "snippet_start": best["start"],
        "snippet_end": best["end"],
        "path": best["path"],
        "title": best["title"],
        "content_type": best["content_type"],
        "language": best["language"],
    }


def passages_limit(n_similar: int) -> int:
    return max(n_similar * PASSAGES_PER_DOC, _MIN_PASSAGES)
