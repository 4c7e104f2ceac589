"""Index upkeep of a project table, so that search stays fast as the project grows.

A small table is searched exactly: scanning every vector is fast and exact. Past
``VECTOR_INDEX_MIN_ROWS`` rows, a vector index replaces the scan: IVF partitions of
RaBitQ-quantized vectors (4 bits per dimension), the best candidates re-ranked on
the full vectors; scalar indices on the filtered columns come with it, so that a
filtered search does not scan the table. Rows written after an index was built are
still found, by a slower scan of them alone, so once they are numerous ``optimize``
folds them into every index. B-trees on what a batch's write looks rows up by (the
document id, the passage key) are there from the table's first rows.

Workers call ``ensure_indices`` after each batch they write; several may do so at
once, so a commit that loses a race with another worker's is retried.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from lancedb.index import Bitmap, BTree, IvfRq, LabelList
from lancedb.table import Table

from ml_worker.embedding import resolve_device
from ml_worker.store import (
    CONTENT,
    DOC_ID,
    PASSAGE_ID,
    VECTOR,
    retrying_commits,
)

logger = logging.getLogger(__name__)

VECTOR_INDEX = f"{VECTOR}_idx"
VECTOR_INDEX_TYPE = "IvfRq"  # as LanceDB lists it
FTS_INDEX = f"{CONTENT}_idx"

VECTOR_INDEX_MIN_ROWS = 50_000
ROWS_PER_PARTITION = 2_000
# Unindexed rows are scanned on every query: fold them in past this share of rows.
MAX_UNINDEXED_SHARE = 0.05
MIN_UNINDEXED_TO_OPTIMIZE = 5_000
# ``optimize`` rewrites the table's small fragments and its full-text index, then
# deletes the files that only versions older than this still use. LanceDB's default
# keeps 7 days of versions, so the disk held every rewrite of a growing project: 8
# optimizes of a table of 41,000 rows left 349 MB on disk for 63 MB of rows. Readers
# hold a version for seconds (a search, a batch): an hour leaves them ample time.
KEEP_OLD_VERSIONS = timedelta(hours=1)

_RETRIES = 5


# The columns search filters on, and the index that answers each filter.
FILTER_INDICES = {
    "language": Bitmap(),
    "content_type": Bitmap(),
    "tags": LabelList(),
}
# What a batch's write looks rows up by (see store.replace_documents): indexed from
# the table's first rows on, so that no write scans a large table.
WRITE_INDICES = {DOC_ID: BTree(), PASSAGE_ID: BTree()}


def ensure_indices(table: Table) -> str | None:
    """Create or refresh the table's indices when its size calls for it.

    Returns what was done (``"vector index"``, ``"optimize"``) or None.
    """
    # Another worker may commit meanwhile: then look again at the new version.
    return retrying_commits(table, lambda: _ensure_indices(table), _RETRIES)


def _ensure_indices(table: Table) -> str | None:
    n_rows = table.count_rows()
    indices = {index.name: index.index_type for index in table.list_indices()}
    for column, config in WRITE_INDICES.items():
        # Missing on a table's first rows, or on a table of an earlier version.
        if n_rows and f"{column}_idx" not in indices:
            table.create_index(column, config=config, replace=False)
    # A table indexed by an earlier version: search's VECTOR_SEARCH settings are
    # not its.
    outdated = indices.get(VECTOR_INDEX, VECTOR_INDEX_TYPE) != VECTOR_INDEX_TYPE
    if VECTOR_INDEX not in indices or outdated:
        if n_rows < VECTOR_INDEX_MIN_ROWS:
            return None
        create_vector_index(table, n_rows, replace=outdated)
        create_filter_indices(table)
        return "vector index"
    unindexed = max(_unindexed_rows(table, name) for name in (VECTOR_INDEX, FTS_INDEX))
    if unindexed >= max(MIN_UNINDEXED_TO_OPTIMIZE, MAX_UNINDEXED_SHARE * n_rows):
        started = time.monotonic()
        table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS)
        logger.info(
            "table %s: %s unindexed rows folded into its indices in %.1fs",
            table.name,
            unindexed,
            time.monotonic() - started,
        )
        return "optimize"
    return None


def create_vector_index(table: Table, n_rows: int, *, replace: bool = False) -> None:
    started = time.monotonic()
    device = resolve_device()
    config = IvfRq(
        distance_type="cosine",
        num_bits=4,
        # Partitions of about 2,000 rows: few enough to train k-means in under a
        # minute per million rows on 2 cores, small enough to scan a few per query.
        num_partitions=max(1, n_rows // ROWS_PER_PARTITION),
        # k-means on the GPU when the model runs there.
        accelerator="cuda" if device.startswith("cuda") else None,
    )
    table.create_index(VECTOR, config=config, name=VECTOR_INDEX, replace=replace)
    logger.info(
        "table %s: vector index of %s rows built in %.1fs",
        table.name,
        n_rows,
        time.monotonic() - started,
    )


def create_filter_indices(table: Table) -> None:
    for column, config in {**FILTER_INDICES, **WRITE_INDICES}.items():
        table.create_index(column, config=config, replace=True)  # type: ignore[call-overload]


def _unindexed_rows(table: Table, index: str) -> int:
    stats = table.index_stats(index)
    return stats.num_unindexed_rows if stats is not None else 0
