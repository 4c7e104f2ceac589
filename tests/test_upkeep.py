"""Index upkeep: the vector index appears past its threshold, new rows stay found."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pytest
from lancedb.index import IvfSq

from ml_worker import store, upkeep
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.search import (
    SearchMode,
    nearest_passages,
    passages_limit,
    search_queries,
)

NDIMS = 384


@pytest.fixture
def small_thresholds(monkeypatch):
    monkeypatch.setattr(upkeep, "VECTOR_INDEX_MIN_ROWS", 1_000)
    monkeypatch.setattr(upkeep, "ROWS_PER_PARTITION", 200)
    monkeypatch.setattr(upkeep, "MIN_UNINDEXED_TO_OPTIMIZE", 100)


@pytest.fixture
def table(vector_db):
    return store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )


def _clustered(rng, n: int, centers: np.ndarray) -> np.ndarray:
    noise = rng.standard_normal((n, NDIMS)) / np.sqrt(NDIMS)
    v = centers[rng.integers(0, len(centers), n)] + noise
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _add(table, vectors: np.ndarray, first: int, words=None) -> None:
    rows = pa.Table.from_pylist(
        [
            {
                "doc_id": f"doc-{first + i}",
                "passage_id": store.passage_id(f"doc-{first + i}", None, 0),
                "passage": 0,
                "start": 0,
                "end": 10,
                "content": (words or {}).get(first + i, f"filler text number {i % 7}"),
                "vector": v.tolist(),
            }
            for i, v in enumerate(vectors)
        ],
        schema=table.schema,
    )
    table.add(rows)


@pytest.fixture
def centers():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((20, NDIMS))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_no_vector_index_below_the_threshold(table, small_thresholds, centers):
    _add(table, _clustered(np.random.default_rng(1), 500, centers), 0)

    assert upkeep.ensure_indices(table) is None
    assert upkeep.VECTOR_INDEX not in {i.name for i in table.list_indices()}


def test_vector_index_created_past_the_threshold(table, small_thresholds, centers):
    _add(table, _clustered(np.random.default_rng(1), 1_200, centers), 0)

    assert upkeep.ensure_indices(table) == "vector index"
    indices = {i.columns[0]: i.index_type for i in table.list_indices()}
    assert indices == {
        "vector": "IvfRq",
        "content": "FTS",
        # Filtered searches and lookups by document read these, not every row.
        "language": "Bitmap",
        "content_type": "Bitmap",
        "tags": "LabelList",
        # What a batch's write looks rows up by.
        "doc_id": "BTree",
        "passage_id": "BTree",
    }


def test_an_index_of_an_earlier_type_is_rebuilt(table, small_thresholds, centers):
    _add(table, _clustered(np.random.default_rng(1), 1_200, centers), 0)
    earlier = IvfSq(distance_type="cosine", num_partitions=4)
    table.create_index("vector", config=earlier, name=upkeep.VECTOR_INDEX)

    assert upkeep.ensure_indices(table) == "vector index"
    indices = {i.columns[0]: i.index_type for i in table.list_indices()}
    assert indices["vector"] == "IvfRq"
    assert indices["language"] == "Bitmap"
    assert upkeep.ensure_indices(table) != "vector index"


def test_optimize_folds_new_rows_in_and_keeps_them_searchable(
    table, small_thresholds, centers
):
    rng = np.random.default_rng(1)
    _add(table, _clustered(rng, 1_200, centers), 0)
    upkeep.ensure_indices(table)
    while upkeep.ensure_indices(table) is not None:  # the full-text index's first rows
        pass
    new = _clustered(rng, 300, centers)
    _add(table, new, 1_200, words={1_300: "the zanzibar ledger was shredded"})

    assert upkeep.ensure_indices(table) == "optimize"
    for index in (upkeep.VECTOR_INDEX, upkeep.FTS_INDEX):
        assert table.index_stats(index).num_unindexed_rows == 0
    (text,) = search_queries(
        table, ["zanzibar ledger"], mode=SearchMode.TEXT, n_similar=5
    )
    assert text[0]["doc_id"] == "doc-1300"
    (vector,) = search_queries(
        table, ["a new row"], mode=SearchMode.VECTOR, n_similar=5, vectors=[new[150]]
    )
    assert vector[0]["doc_id"] == "doc-1350"


def test_indexed_search_recall_against_exact_search(table, small_thresholds, centers):
    rng = np.random.default_rng(1)
    _add(table, _clustered(rng, 2_000, centers), 0)
    upkeep.ensure_indices(table)

    recalls = []
    for query in _clustered(rng, 20, centers):
        # As a search for 10 documents runs it: it fetches more passages than that.
        nearest = nearest_passages(table, query, passages_limit(10))
        found = set(sorted(nearest, key=nearest.__getitem__, reverse=True)[:10])
        exact = table.search(query, query_type="vector").distance_type("cosine")
        exact = exact.bypass_vector_index().with_row_id(True).limit(10).to_arrow()
        expected = set(exact["_rowid"].to_pylist())
        recalls.append(len(found & expected) / 10)
    assert np.mean(recalls) >= 0.95


@pytest.mark.parametrize(
    "keep, kept", [(upkeep.KEEP_OLD_VERSIONS, True), (timedelta(milliseconds=1), False)]
)
def test_optimize_deletes_the_versions_it_supersedes_once_old(
    table, small_thresholds, centers, monkeypatch, keep, kept
):
    monkeypatch.setattr(upkeep, "KEEP_OLD_VERSIONS", keep)
    rng = np.random.default_rng(1)
    _add(table, _clustered(rng, 1_200, centers), 0)
    while upkeep.ensure_indices(table) is not None:
        pass
    for first in range(1_200, 1_500, 50):
        _add(table, _clustered(rng, 50, centers), first)
    versions = len(table.list_versions())

    assert upkeep.ensure_indices(table) == "optimize"
    assert (len(table.list_versions()) > versions) is kept
    assert table.count_rows() == 1_500
    assert len(table.search(None).limit(None).to_arrow()) == 1_500
