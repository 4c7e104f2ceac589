"""LanceDB retrieval: a query's candidate rows and their scores, by row id.

Each query asks LanceDB for the best passages by vector similarity (the IVF index,
tuned by ``VECTOR_SEARCH``) and by BM25 over ``content``. Ranking reads only row ids
and scores; a row's fields are read (``read_rows``) once it is among the best. How
many passages a search asks for is measured by bench.quality (docs/retrieval.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from lancedb.table import Table

from ml_worker.search.filters import sql_list
from ml_worker.store import CONTENT, DOC_ID, PASSAGE

# Passages fetched per requested document: several passages of one document often
# fill the top of the list, and grouping must still yield n_similar documents
# without a second round of candidates.
PASSAGES_PER_DOC = 5
MIN_PASSAGES = 50

# The row id column LanceDB adds when asked (``with_row_id``).
ROW_ID = "_rowid"
# The column numbering the query vector of each row a query of several answers.
_QUERY_INDEX = "query_index"


def passages_limit(n_similar: int) -> int:
    """The passages a round of candidates asks each ranking for."""
    return max(n_similar * PASSAGES_PER_DOC, MIN_PASSAGES)


@dataclass(frozen=True)
class VectorSearch:
    """How many IVF partitions a query visits, and how many candidates per result
    are re-ranked on their full vectors (tuned by bench.search_latency)."""

    # 30 of 500 partitions at a million rows: recall@10 0.995 in 8 ms with 4-bit
    # codes (1-bit codes needed 5 candidates per result for 0.979; 8-bit scalar
    # quantization 100 partitions and 60 ms for 0.967). One candidate per result
    # still re-reads its full vector: hybrid scoring relies on exact similarities.
    nprobes: int = 30
    refine_factor: int = 1


VECTOR_SEARCH = VectorSearch()


def tuned(builder):
    """A vector or hybrid LanceDB query, with the recall settings of the index."""
    return builder.nprobes(VECTOR_SEARCH.nprobes).refine_factor(
        VECTOR_SEARCH.refine_factor
    )


def nearest_passages(
    table: Table, query_vector, limit: int, where: str | None = None
) -> dict[int, float]:
    """The cosine similarity to the query of its ``limit`` nearest rows, by row id.

    Only row ids and similarities are read: a result's fields are read for the few
    rows that make it to the results. The nearest rows may include those of
    documents without text (NO_TEXT_PASSAGE), which are dropped from the results:
    excluding them by a condition would cost a scan of the table per query, as it
    matches nearly every row, so only a search whose candidates they crowded out
    asks again without them.
    """
    builder = table.search(query_vector, query_type="vector")
    builder = builder.distance_type("cosine")  # type: ignore[attr-defined]
    distances = _scores_by_row(tuned(builder), "_distance", limit, where)
    # Exact: the index re-ranks its candidates on their full vectors.
    return {row: 1.0 - distance for row, distance in distances.items()}


def nearest_rows(
    table: Table, vectors: list, limit: int, where: str | None, columns: list[str]
) -> list[pa.Table]:
    """For each vector, its ``limit`` nearest rows with their row id, ``columns``
    and cosine ``_distance``: one LanceDB query for all the vectors.

    With the index's recall settings, as ``nearest_passages``. At 100,000 passages
    (bench.search_latency's table, load average 10 on 2 cores), one query of 8
    vectors took 30 ms (p50) where 8 queries of one took 67; of 4, 21 and 31.
    """
    builder = table.search(
        vectors if len(vectors) > 1 else vectors[0], query_type="vector"
    )
    builder = builder.distance_type("cosine")  # type: ignore[attr-defined]
    builder = tuned(builder).with_row_id(True)
    if where is not None:
        builder = builder.where(where, prefilter=True)
    rows = builder.select([*columns, "_distance"]).limit(limit).to_arrow()
    if len(vectors) == 1:  # LanceDB numbers the queries of several vectors only
        return [rows]
    queries = rows[_QUERY_INDEX]
    return [rows.filter(pc.equal(queries, i)) for i in range(len(vectors))]


def text_scores(
    table: Table, query: str, limit: int, where: str | None = None
) -> dict[int, float]:
    """The BM25 scores of the query's ``limit`` best rows, by row id."""
    builder = table.search(query, query_type="fts", fts_columns=CONTENT)
    return _scores_by_row(builder, "_score", limit, where)


def _scores_by_row(builder, score: str, limit: int, where: str | None) -> dict:
    """The ``score`` column of the query's ``limit`` best rows, by row id."""
    builder = builder.with_row_id(True)
    if where is not None:
        builder = builder.where(where, prefilter=True)
    rows = builder.select([score]).limit(limit).to_arrow()
    return dict(zip(rows[ROW_ID].to_pylist(), rows[score].to_pylist(), strict=False))


def first_passage_similarities(
    table: Table, query_vector, doc_ids: set[str]
) -> dict[str, float]:
    """The cosine similarity to the query of these documents' first passages.

    An exact search over these rows alone (a prefilter on the doc_id index): an
    indexed search would miss the rows of partitions it does not probe.
    """
    if not doc_ids:
        return {}
    builder = table.search(query_vector, query_type="vector")
    builder = builder.distance_type("cosine").bypass_vector_index()  # type: ignore[attr-defined]
    condition = f"{DOC_ID} IN ({sql_list(tuple(sorted(doc_ids)))}) AND {PASSAGE} = 0"
    rows = (
        builder.where(condition, prefilter=True)
        .select([DOC_ID, "_distance"])
        .limit(len(doc_ids))
        .to_arrow()
    )
    return {
        doc: 1.0 - distance
        for doc, distance in zip(
            rows[DOC_ID].to_pylist(), rows["_distance"].to_pylist(), strict=True
        )
    }


def read_rows(table: Table, row_ids: list[int], read: dict[int, dict], fields) -> None:
    """Read ``fields`` of the rows that lack some of them into ``read``, by row id."""
    missing = [row for row in row_ids if not read.get(row, {}).keys() >= set(fields)]
    if missing:
        rows = table.take_row_ids(missing).with_row_id().select(fields).to_list()
        for row in rows:
            read[row.pop(ROW_ID)] = row
