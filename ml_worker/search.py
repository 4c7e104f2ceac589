"""Hybrid (vector + full-text) search over a project's passages, ranked by document.

Each query asks LanceDB for the best passages by vector similarity and by BM25 over
``content``; in hybrid mode the candidates of both are scored by a linear combination
of their vector similarity and relative BM25. Filters are SQL conditions LanceDB
applies before ranking, so a filtered search returns the best matching documents,
not a filtered short list.
Passages are then grouped into documents: ``n_similar`` counts documents, each with
its best passage as a snippet. The settings below are measured by bench.quality
(docs/retrieval.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import Enum

import numpy as np
from lancedb.table import Table

from ml_worker.store import CONTENT, DOC_ID, PASSAGE, VECTOR, sql_string
from ml_worker.upkeep import tuned

# Passages fetched per requested document: several passages of one document often
# fill the top of the list, and grouping must still yield n_similar documents.
PASSAGES_PER_DOC = 5
_MIN_PASSAGES = 50

# Share of the vector similarity in a hybrid score, the rest being BM25's divided by
# the query's best BM25. Measured by bench.quality (docs/retrieval.md).
VECTOR_WEIGHT = 0.6

# Rows without text (documents with no content) have no passage to find.
_PASSAGES_ONLY = f"{PASSAGE} >= 0"

_RESULT_FIELDS = [
    DOC_ID,
    "root_id",
    PASSAGE,
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


def parse_enum(enum: type[Enum], name: str, value) -> Enum:
    """``value`` as a member of ``enum``, or a ValueError naming the choices."""
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}") from None


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return; unset fields do not filter."""

    languages: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    path_prefix: str | None = None
    tags: tuple[str, ...] = ()  # documents with any of these tags

    @classmethod
    def of(cls, *, languages=None, content_types=None, path_prefix=None, tags=None):
        """Filters from task arguments: each list may also be a single string."""
        if path_prefix is not None and not isinstance(path_prefix, str):
            raise ValueError(f"path_prefix must be a string, got {path_prefix!r}")
        return cls(
            languages=_strings("languages", languages),
            content_types=_strings("content_types", content_types),
            path_prefix=path_prefix or None,
            tags=_strings("tags", tags),
        )

    def sql(self) -> str | None:
        """The LanceDB (DataFusion SQL) condition of these filters."""
        conditions = []
        if self.languages:
            conditions.append(f"language IN ({_sql_list(self.languages)})")
        if self.content_types:
            conditions.append(f"content_type IN ({_sql_list(self.content_types)})")
        if self.path_prefix:
            conditions.append(f"starts_with(path, {sql_string(self.path_prefix)})")
        if self.tags:
            conditions.append(f"array_has_any(tags, [{_sql_list(self.tags)}])")
        return " AND ".join(conditions) or None


def _strings(name: str, value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) for v in value
    ):
        raise ValueError(f"{name} must be a string or a list of strings, got {value!r}")
    return tuple(value)


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(sql_string(v) for v in values)


def search_passages(
    table: Table,
    query: str,
    query_vector,
    *,
    mode: SearchMode,
    limit: int,
    where: str | None = None,
) -> list[dict]:
    """The best passages for one query, best first, each with a ``score``.

    ``where``: a SQL condition on the table's columns, applied before ranking.
    """
    condition = _PASSAGES_ONLY if where is None else f"{_PASSAGES_ONLY} AND ({where})"
    if mode is SearchMode.VECTOR:
        column, score = "_distance", lambda d: 1.0 - d / 2  # cosine distance in [0, 2]
        builder = tuned(
            table.search(query_vector, query_type="vector").distance_type("cosine")
        ).select([*_RESULT_FIELDS, column])
    elif mode is SearchMode.TEXT:
        column, score = "_score", float
        builder = table.search(query, query_type="fts", fts_columns=CONTENT).select(
            [*_RESULT_FIELDS, column]
        )
    else:
        return _hybrid_passages(table, query, query_vector, limit=limit, where=condition)
    results = builder.where(condition, prefilter=True).limit(limit).to_arrow()
    rows = results.select([*_RESULT_FIELDS, column]).to_pylist()
    for row in rows:
        row["score"] = float(score(row.pop(column)))
    return rows


def _hybrid_passages(table: Table, query: str, query_vector, *, limit: int, where: str):
    """Vector and full-text candidates, scored by a linear combination.

    LanceDB's hybrid query min-max normalizes each list, which zeroes a list of one:
    a rare keyword found in a single passage would weigh nothing. Here BM25 is
    divided by the query's best BM25, and every candidate's vector similarity is
    computed exactly, full-text-only ones included.
    """
    fields = [*_RESULT_FIELDS, VECTOR]
    by_vector = (
        tuned(table.search(query_vector, query_type="vector").distance_type("cosine"))
        .where(where, prefilter=True)
        .select([*fields, "_distance"])
        .limit(limit)
        .to_arrow()
    )
    by_text = (
        table.search(query, query_type="fts", fts_columns=CONTENT)
        .where(where, prefilter=True)
        .select([*fields, "_score"])
        .limit(limit)
        .to_list()
    )
    best_bm25 = max((r["_score"] for r in by_text), default=0.0) or 1.0
    candidates = {(r[DOC_ID], r[PASSAGE]): {**r, "bm25": 0.0} for r in by_vector.to_pylist()}
    for row in by_text:
        candidates[(row[DOC_ID], row[PASSAGE])] = {**row, "bm25": row["_score"] / best_bm25}
    query_vector = np.asarray(query_vector, dtype=np.float32)
    rows = []
    for row in candidates.values():
        similarity = float(np.dot(np.asarray(row.pop(VECTOR)), query_vector))
        row["score"] = VECTOR_WEIGHT * similarity + (1 - VECTOR_WEIGHT) * row.pop("bm25")
        row.pop("_score", None)
        row.pop("_distance", None)
        rows.append(row)
    rows.sort(key=lambda r: r["score"], reverse=True)
    return rows[:limit]


def group_by_document(
    passages: list[dict],
    *,
    n_similar: int,
    scoring: Scoring,
    min_score: float | None = None,
) -> list[dict]:
    """Documents ranked by their passages' scores, each with its best passage.

    ``min_score`` leaves out documents scoring below it.
    """
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
        if min_score is None or score >= min_score:
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
