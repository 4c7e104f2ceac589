"""Writes of a batch's passages, correct with any number of writers and no lock."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from lancedb.table import Table

from ml_worker.exceptions import TableBusy
from ml_worker.store.schema import (
    CONTENT,
    CONTENT_HASH,
    DOC_ID,
    PASSAGE,
    PASSAGE_ID,
    ROW_ID,
    VECTOR,
    documents_filter,
    keys_filter,
    passage_id,
)
from ml_worker.store.tables import table_embedder

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Rounds of re-writing passages that two writers inserted at once (see _one_row_each).
_TWIN_ROUNDS = 5
# A batch's write, started again when other writers' commits kept winning.
WRITE_ATTEMPTS = 4
# Bounds the length of the SQL filters built from document ids.
_IDS_PER_FILTER = 1000


def replace_documents(table: Table, doc_ids: list[str], rows: list[dict]) -> None:
    """Make ``rows`` the only passages of these documents, whoever else writes them.

    Two commits, correct with any number of writers on any number of hosts and no
    lock between them:

    1. a merge-insert on the passage key adds the rows whose key is not there yet.
       The key is the table's primary key, so Lance sees two writers inserting the
       same key at once, and the later one retries: a batch written twice at once,
       or again (redelivered), leaves each passage once.
    2. a delete of these documents' rows whose key is not among the new ones: the
       passages of earlier versions of their text, found through the doc_id index.

    Between the two commits a document has the passages of two versions, never
    none; a writer killed there leaves both until the batch is written again
    (``stored_hashes`` then reports two hashes: the document is changed). Two
    *different* versions of a document written at once (its text changed in
    Elasticsearch while a batch was written twice) may delete each other's rows:
    the next incremental run sees the document changed and writes it again. After
    the merge-insert, the batch's passages are counted once more: see
    ``_one_row_each``.

    Not a delete, then an append: Lance sees no conflict between the two, and on
    s3:// (no lock file) 4 writers writing every batch twice left 120 duplicate
    passages. Nor one merge-insert that also deletes the unmatched rows of the
    documents: it scans the whole table, 421 ms a batch at a million passages.
    """
    rows = [
        {
            **row,
            PASSAGE_ID: passage_id(row[DOC_ID], row.get(CONTENT_HASH), row[PASSAGE]),
        }
        for row in _with_vectors(table, rows)
    ]
    # Each step of the write is idempotent: the whole of it may start again.
    retrying_commits(table, lambda: _replace(table, doc_ids, rows), WRITE_ATTEMPTS)


def retrying_commits(table: Table, change: Callable[[], T], attempts: int) -> T:
    """``change()``, started again on the table's newest version while other
    writers' commits keep winning; then ``TableBusy``, which the worker retries.

    Lance retries a commit itself, for up to 30 s: past that it gives up ("Too many
    concurrent writers"), as 4 workers writing small batches on s3:// made it do.
    """
    for attempt in range(attempts):
        try:
            return change()
        except (OSError, RuntimeError, ValueError) as e:
            if not is_commit_conflict(e):
                raise
            if attempt == attempts - 1:
                msg = f"table {table.name}: other writers kept committing first ({e})"
                raise TableBusy(msg) from e
            time.sleep(random.uniform(0.5, 1.5) * 2**attempt)
            table.checkout_latest()
    raise AssertionError("unreachable: the last attempt returns or raises")


def _replace(table: Table, doc_ids: list[str], rows: list[dict]) -> None:
    # Starting from the newest version, a commit seldom has to be retried.
    table.checkout_latest()
    if rows:
        new = pa.Table.from_pylist(rows, schema=table.schema)
        table.merge_insert(PASSAGE_ID).when_not_matched_insert_all().execute(new)
        _one_row_each(table, new)
    kept = [row[PASSAGE_ID] for row in rows]
    stale = documents_filter(doc_ids)
    if kept:
        stale += f" AND NOT ({keys_filter(kept)})"
    # A delete commits a version even when it matches nothing, as it does for new
    # documents; the count reads the same version, so it skips no row.
    if table.count_rows(stale):
        table.delete(stale)


def _one_row_each(table: Table, new: pa.Table) -> None:
    """Leave one row for each passage key of ``new``, whoever else wrote them.

    Lance 13 sees two merge-inserts adding the same primary key only when neither
    looked the keys up in a scalar index (lance-format/lance PR 9238, a draft):
    with the passage key's B-tree, 4 writers of the same 20 batches at once left
    633 rows for 161 keys; without it, 161. The index stays, since without it each
    write scans the key column (250 ms a batch at a million passages, 9 ms with
    it). So the twins exist, from the later of two such commits until this repair:
    each write counts its keys' rows through the index once it has committed (the
    later of two writers of a batch sees both copies) and deletes, in one commit,
    every copy of a key but the one of lowest row id. Every writer keeps that same
    copy, so a passage never loses its last row and a document never has none.

    Measured with 4 writers on an S3 API, every batch written twice at once (4
    runs of 192 documents, each written then changed): a reader polling every
    0.1 s saw, with the earlier repair (every copy deleted, then one inserted
    again), documents without passages in 26 of 204 polls (209 document
    observations); with this one, in none of 156. Twins in both, as Lance leaves
    them until the repair. A doubled batch's write also took less: 554 to 1,917 ms
    (median) against 711 to 3,207 ms, one commit instead of a delete and an
    insert that scans the key column.

    A row id is the row's address here (Lance's stable row ids are still
    experimental in Lance 13: lance-format/lance#8931), and ``optimize`` moves the
    rows it compacts. A compaction committed between two writers' counts of one
    batch may make them keep different copies; the later of the two then finds a
    key without a row when it counts again, and inserts it again by a
    merge-insert that does not use the index, which Lance checks against every
    concurrent insert of the same key.
    """
    keys = new[PASSAGE_ID].to_pylist()
    repaired: set[str] = set()
    for _ in range(_TWIN_ROUNDS):
        table.checkout_latest()
        copies = _row_ids(table, keys)
        lost = sorted(repaired - copies.keys())
        if lost:
            logger.warning(
                "table %s: %s passages lost every copy; written again",
                table.name,
                len(lost),
            )
            (
                table.merge_insert(PASSAGE_ID)
                .use_index(False)
                .when_not_matched_insert_all()
                .execute(new.filter(pc.is_in(new[PASSAGE_ID], pa.array(lost))))
            )
            continue
        twins = {key: sorted(ids) for key, ids in copies.items() if len(ids) > 1}
        if not twins:
            return
        logger.info(
            "table %s: %s passages written twice at once", table.name, len(twins)
        )
        repaired.update(twins)
        extra = [row_id for ids in twins.values() for row_id in ids[1:]]
        table.delete(
            f"{keys_filter(list(twins))}"
            f" AND {ROW_ID} IN ({', '.join(str(row_id) for row_id in extra)})"
        )
    raise RuntimeError(
        f"table {table.name}: passages kept being written twice at once"
        f" after {_TWIN_ROUNDS} rounds; the batch is retried"
    )


def _row_ids(table: Table, keys: list[str]) -> dict[str, list[int]]:
    """The row ids of each of these passage keys' rows, found through the index."""
    stored = (
        table.search()
        .where(keys_filter(keys))
        .select([PASSAGE_ID])
        .with_row_id(True)
        .limit(None)
        .to_arrow()
    )
    copies: dict[str, list[int]] = {}
    for key, row_id in zip(
        stored[PASSAGE_ID].to_pylist(), stored[ROW_ID].to_pylist(), strict=True
    ):
        copies.setdefault(key, []).append(row_id)
    return copies


def is_commit_conflict(error: Exception) -> bool:
    """Whether Lance gave up a commit because other writers committed first."""
    text = str(error).lower()
    return any(
        words in text
        for words in ("conflict", "already exists", "retryable", "too many concurrent")
    )


def _with_vectors(table: Table, rows: list[dict]) -> list[dict]:
    """``rows`` with their vectors, computed by the table's own embedding function
    where a row has none (rows may come with vectors computed beforehand).
    """
    if all(row.get(VECTOR) is not None for row in rows):
        return rows
    vectors = table_embedder(table).compute_source_embeddings(
        [r[CONTENT] for r in rows]
    )
    return [{**row, VECTOR: vector} for row, vector in zip(rows, vectors, strict=False)]


def delete_documents(table: Table, doc_ids: list[str]) -> None:
    for start in range(0, len(doc_ids), _IDS_PER_FILTER):
        table.delete(documents_filter(doc_ids[start : start + _IDS_PER_FILTER]))
