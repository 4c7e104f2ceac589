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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

import numpy as np
from lancedb.table import Table

from ml_worker.store import (
    CONTENT,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
    VECTOR,
    sql_string,
    table_embedder,
)
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


def search_queries(
    table: Table,
    queries: list[str],
    *,
    mode: SearchMode,
    limit: int,
    where: str | None = None,
) -> list[list[dict]]:
    """The best passages for each query, as ``search_passages`` gives them.

    The full-text searches run while the model embeds the queries, so a search
    waits for the slower of the two, not for both.
    """
    n = len(queries)
    with ThreadPoolExecutor(max_workers=1) as pool:
        by_text = None
        if mode is not SearchMode.VECTOR:
            by_text = pool.submit(
                lambda: [_text_rows(table, q, mode, limit, where) for q in queries]
            )
        vectors = [None] * n
        if mode is not SearchMode.TEXT:
            vectors = table_embedder(table).compute_query_embeddings(queries)
        text_rows = by_text.result() if by_text is not None else [None] * n
    return [
        _ranked(table, vector, rows, mode=mode, limit=limit, where=where)
        for vector, rows in zip(vectors, text_rows)
    ]


def search_passages(
    table: Table,
    query: str,
    query_vector,
    *,
    mode: SearchMode,
    limit: int,
    where: str | None = None,
) -> list[dict]:
    """The best passages for one query, best first.

    Each is ``{doc_id, passage, row_id, score}``: only what ranking needs is read,
    the fields of a result are read by ``document_hits`` for the few documents kept.
    ``where``: a SQL condition on the table's columns, applied before ranking.
    """
    text_rows = None
    if mode is not SearchMode.VECTOR:
        text_rows = _text_rows(table, query, mode, limit, where)
    return _ranked(table, query_vector, text_rows, mode=mode, limit=limit, where=where)


def _text_rows(table: Table, query: str, mode: SearchMode, limit: int, where):
    # Hybrid scoring compares full-text candidates to the query on their vectors.
    columns = [VECTOR, "_score"] if mode is SearchMode.HYBRID else ["_score"]
    return _best_rows(_by_text(table, query), columns, limit, where)


def _ranked(table: Table, query_vector, text_rows, *, mode, limit, where) -> list[dict]:
    if mode is SearchMode.TEXT:
        for row in text_rows:
            row["score"] = row.pop("_score")
        return text_rows
    by_vector = _by_vector(table, query_vector)
    vector_rows = _best_rows(by_vector, ["_distance"], limit, where)
    if mode is SearchMode.VECTOR:
        for row in vector_rows:
            row["score"] = 1.0 - row.pop("_distance") / 2  # cosine distance in [0, 2]
        return vector_rows
    return _fused(vector_rows, text_rows, query_vector, limit)


def _by_vector(table: Table, query_vector):
    return lambda: tuned(
        table.search(query_vector, query_type="vector").distance_type("cosine")
    )


def _by_text(table: Table, query: str):
    return lambda: table.search(query, query_type="fts", fts_columns=CONTENT)


def _best_rows(new_query, columns: list[str], limit: int, where: str | None):
    """The query's best ``limit`` passages with text: their doc_id, passage, row id
    and ``columns``, which name the query's score (``_distance`` or ``_score``).

    Excluding the rows of documents with no text by a condition would cost a scan of
    the table per query (the condition matches nearly every row), so they are
    dropped from the results instead; only if they took places in a full list is
    the query asked again, with the condition.
    """

    def run(condition: str | None) -> list[dict]:
        builder = new_query().with_row_id(True)
        if condition is not None:
            builder = builder.where(condition, prefilter=True)
        return builder.select([DOC_ID, PASSAGE, *columns]).limit(limit).to_list()

    rows = run(where)
    with_text = [row for row in rows if row[PASSAGE] != NO_TEXT_PASSAGE]
    if len(with_text) < len(rows) == limit:
        with_text = run(f"{_PASSAGES_ONLY} AND ({where})" if where else _PASSAGES_ONLY)
    for row in with_text:
        row["row_id"] = row.pop("_rowid")
    return with_text


def _fused(by_vector: list[dict], by_text: list[dict], query_vector, limit: int):
    """Vector and full-text candidates, scored by a linear combination.

    LanceDB's hybrid query min-max normalizes each list, which zeroes a list of one:
    a rare keyword found in a single passage would weigh nothing. Here BM25 is
    divided by the query's best BM25, and every candidate's vector similarity is
    exact: re-ranked vector candidates carry it, full-text ones are compared to the
    query on their stored vectors.
    """
    best_bm25 = max((r["_score"] for r in by_text), default=0.0) or 1.0
    query_vector = np.asarray(query_vector, dtype=np.float32)
    candidates = {}
    for row in by_vector:  # a BM25 of 0 unless the full-text search found it too
        similarity = 1.0 - row.pop("_distance")  # exact: re-ranked on full vectors
        candidates[row["row_id"]] = {**row, "score": VECTOR_WEIGHT * similarity}
    for row in by_text:
        similarity = float(np.dot(np.asarray(row.pop(VECTOR)), query_vector))
        bm25 = row.pop("_score") / best_bm25
        score = VECTOR_WEIGHT * similarity + (1 - VECTOR_WEIGHT) * bm25
        candidates[row["row_id"]] = {**row, "score": score}
    return sorted(candidates.values(), key=lambda r: r["score"], reverse=True)[:limit]


def group_by_document(
    passages: list[dict],
    *,
    n_similar: int,
    scoring: Scoring,
    min_score: float | None = None,
) -> list[dict]:
    """The best documents, each as its best passage with the document's ``score``.

    ``min_score`` leaves out documents scoring below it.
    """
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for passage in passages:
        by_doc[passage[DOC_ID]].append(passage)
    ranked = []
    for doc_passages in by_doc.values():
        doc_passages.sort(key=lambda p: p["score"], reverse=True)
        best = doc_passages[0]
        if scoring is Scoring.WEIGHTED_SUM:
            score = sum(p["score"] / 2**i for i, p in enumerate(doc_passages))
        else:
            score = best["score"]
        if min_score is None or score >= min_score:
            ranked.append({**best, "score": score})
    ranked.sort(key=lambda h: h["score"], reverse=True)
    return ranked[:n_similar]


def document_hits(table: Table, ranked: list[dict]) -> list[dict]:
    """The results of ranked documents: their fields and best passage as a snippet."""
    if not ranked:
        return []
    rows = (
        table.take_row_ids([r["row_id"] for r in ranked])
        .with_row_id()
        .select(_RESULT_FIELDS)
        .to_list()
    )
    by_row_id = {row["_rowid"]: row for row in rows}
    return [_hit(by_row_id[r["row_id"]], r["score"]) for r in ranked]


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
