"""Hybrid (vector + full-text) search over a project's passages, ranked by document.

Each query asks LanceDB for the best passages by vector similarity and by BM25 over
``content``; in hybrid mode the candidates of both are scored by a linear combination
of their vector similarity and relative BM25. Filters are SQL conditions LanceDB
applies before ranking, so a filtered search returns the best matching documents,
not a filtered short list.
Ranking reads only row ids and scores; a row's fields are read once it is among the
best. Passages are then grouped into documents: ``n_similar`` counts documents, each
with its best passage as a snippet. The settings below are measured by bench.quality
(docs/retrieval.md).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from lancedb.table import Table

from ml_worker.store import (
    CONTENT,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
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
    n_similar: int,
    scoring: Scoring = Scoring.BEST_PASSAGE,
    where: str | None = None,
    min_score: float | None = None,
    vectors: list | None = None,
) -> list[list[dict]]:
    """For each query, its ``n_similar`` best documents as results, best first.

    ``where``: a SQL condition on the table's columns, applied before ranking.
    ``min_score`` leaves out documents scoring below it. ``vectors``: the queries'
    vectors, when the caller has them; the table's embedding function computes them
    otherwise. The full-text searches run while the model embeds the queries, so a
    search waits for the slower of the two, not for both.
    """
    limit = passages_limit(n_similar)
    n = len(queries)
    with ThreadPoolExecutor(max_workers=1) as pool:
        by_text = None
        if mode is not SearchMode.VECTOR:
            by_text = pool.submit(
                lambda: [_by_text(table, q, limit, where) for q in queries]
            )
        if vectors is None and mode is not SearchMode.TEXT:
            vectors = table_embedder(table).compute_query_embeddings(queries)
        text_scores = by_text.result() if by_text is not None else [None] * n
    grouping = {"n_similar": n_similar, "scoring": scoring, "min_score": min_score}
    results = []
    if vectors is None:
        vectors = [None] * n
    for vector, bm25 in zip(vectors, text_scores):
        similarities = None
        if mode is not SearchMode.TEXT:
            similarities = nearest_passages(table, vector, limit, where)
        hits, blank = _documents(table, _ranked(similarities, bm25, mode), **grouping)
        nearest_full = similarities is not None and len(similarities) == limit
        if blank and len(hits) < n_similar and nearest_full:
            # Passages of documents without text took places in the nearest ones:
            # look past them (see nearest_passages).
            condition = f"{_PASSAGES_ONLY} AND ({where})" if where else _PASSAGES_ONLY
            similarities = nearest_passages(table, vector, limit, condition)
            hits, _ = _documents(table, _ranked(similarities, bm25, mode), **grouping)
        results.append(hits)
    return results


def nearest_passages(
    table: Table, query_vector, limit: int, where: str | None = None
) -> dict[int, float]:
    """The cosine similarity to the query of its ``limit`` nearest rows, by row id.

    Only row ids and similarities are read: a result's fields are read for the few
    rows that make it to the results. The nearest rows may include those of
    documents without text (NO_TEXT_PASSAGE), which are dropped from the results:
    excluding them by a condition would cost a scan of the table per query, as it
    matches nearly every row.
    """
    builder = table.search(query_vector, query_type="vector").distance_type("cosine")
    distances = _scores_by_row(tuned(builder), "_distance", limit, where)
    # Exact: the index re-ranks its candidates on their full vectors.
    return {row: 1.0 - distance for row, distance in distances.items()}


def _by_text(table: Table, query: str, limit: int, where: str | None):
    """The BM25 scores of the query's ``limit`` best rows, by row id."""
    builder = table.search(query, query_type="fts", fts_columns=CONTENT)
    return _scores_by_row(builder, "_score", limit, where)


def _scores_by_row(builder, score: str, limit: int, where: str | None) -> dict:
    """The ``score`` column of the query's ``limit`` best rows, by row id."""
    builder = builder.with_row_id(True)
    if where is not None:
        builder = builder.where(where, prefilter=True)
    rows = builder.select([score]).limit(limit).to_arrow()
    return dict(zip(rows["_rowid"].to_pylist(), rows[score].to_pylist()))


def _ranked(
    similarities: dict[int, float] | None,
    bm25: dict[int, float] | None,
    mode: SearchMode,
) -> list[tuple[int, float]]:
    """Row ids and their scores, best first."""
    if mode is SearchMode.TEXT:
        scores = bm25
    elif mode is SearchMode.VECTOR:
        scores = {row: (1.0 + s) / 2 for row, s in similarities.items()}  # in [0, 1]
    else:
        scores = _fused(similarities, bm25)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def _fused(similarities: dict[int, float], bm25: dict[int, float]) -> dict[int, float]:
    """Vector and full-text candidates, scored by a linear combination.

    LanceDB's hybrid query min-max normalizes each list, which zeroes a list of one:
    a rare keyword found in a single passage would weigh nothing. Here BM25 is
    divided by the query's best BM25. A full-text candidate that is not among the
    nearest rows is given the similarity of the farthest of them, the most it can
    have: reading its vector would cost more than it changes (bench.quality).
    """
    best_bm25 = max(bm25.values(), default=0.0) or 1.0
    floor = min(similarities.values(), default=0.0)
    return {
        row: VECTOR_WEIGHT * similarities.get(row, floor)
        + (1 - VECTOR_WEIGHT) * bm25.get(row, 0.0) / best_bm25
        for row in similarities.keys() | bm25.keys()
    }


def _documents(
    table: Table,
    ranked: list[tuple[int, float]],
    *,
    n_similar: int,
    scoring: Scoring,
    min_score: float | None,
) -> tuple[list[dict], bool]:
    """The results of the best documents of ranked rows, and whether rows of
    documents without text were dropped.

    Reading a row's fields costs a read per row and column, so under
    ``BEST_PASSAGE`` they are read a few rows at a time, until ``n_similar``
    documents are found: a document's first row is its best.
    """
    if not ranked:
        return [], False
    step = n_similar if scoring is Scoring.BEST_PASSAGE else len(ranked)
    passages, doc_ids, blank = [], set(), False
    for start in range(0, len(ranked), step):
        chunk = ranked[start : start + step]
        rows = _fields(table, [row for row, _ in chunk])
        for row_id, score in chunk:
            row = rows[row_id]
            if row[PASSAGE] == NO_TEXT_PASSAGE:
                blank = True
                continue
            passages.append({**row, "score": score})
            doc_ids.add(row[DOC_ID])
        if scoring is Scoring.BEST_PASSAGE and (
            len(doc_ids) >= n_similar
            or (min_score is not None and chunk[-1][1] < min_score)
        ):
            break
    ranked_docs = group_by_document(
        passages, n_similar=n_similar, scoring=scoring, min_score=min_score
    )
    return [_hit(doc) for doc in ranked_docs], blank


def _fields(table: Table, row_ids: list[int]) -> dict[int, dict]:
    rows = table.take_row_ids(row_ids).with_row_id().select(_RESULT_FIELDS).to_list()
    return {row.pop("_rowid"): row for row in rows}


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


def _hit(best: dict) -> dict:
    """A result: the document's fields, its score and its best passage as a snippet."""
    return {
        "doc_id": best[DOC_ID],
        "root_id": best["root_id"],
        "score": best["score"],
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
