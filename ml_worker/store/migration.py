"""A table set up for writes: its full-text index and its passage key, added to
tables made by earlier versions without rewriting their rows."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lancedb.index import FTS
from lancedb.table import Table

from ml_worker.store.schema import CONTENT, CONTENT_HASH, DOC_ID, PASSAGE, PASSAGE_ID

logger = logging.getLogger(__name__)

# The same key as schema.passage_id(), computed by Lance from a row of a table made
# before it existed.
_PASSAGE_ID_SQL = (
    f"concat({DOC_ID}, '/', coalesce({CONTENT_HASH}, ''), '/',"
    f" CAST({PASSAGE} AS VARCHAR))"
)
# How Lance marks the primary key in a field's metadata (it has no getter).
_PRIMARY_KEY_METADATA = b"lance-schema:unenforced-primary-key"
# Migration steps that lost a race with another worker's are looked at again.
_MIGRATION_ATTEMPTS = 6


def ensure_passage_key(table: Table, analysis: FTS | None = None) -> None:
    """Set the table up for writes: its full-text index (with ``analysis``, or
    English as tables before it had a choice), and the passage key
    declared its primary key, first added to a table made by an earlier version
    (Lance computes it from each row's columns and writes that column alone: the
    rest of the table is not rewritten).

    Each step is skipped once done, so workers setting up one table at once agree:
    a step that lost a race to another worker's (two fan-outs of a new project
    both creating its index) is seen done on the next look.
    """
    for attempt in range(_MIGRATION_ATTEMPTS):
        step = pending_step(table, analysis)
        if step is None:
            return
        what, do = step
        logger.info("table %s: %s", table.name, what)
        try:
            do()
        except (OSError, RuntimeError, ValueError):
            if attempt == _MIGRATION_ATTEMPTS - 1:
                raise
            table.checkout_latest()
    raise RuntimeError(f"table {table.name}: its passage key could not be set up")


def pending_step(
    table: Table, analysis: FTS | None = None
) -> tuple[str, Callable[[], object]] | None:
    """The next step of the table's set-up, what it does and how; None when done."""
    if f"{CONTENT}_idx" not in {index.name for index in table.list_indices()}:
        # Unindexed rows stay searchable: the index is built on the empty table.
        config = analysis or FTS()
        return "creating the full-text index", lambda: table.create_index(
            CONTENT, config=config, replace=False
        )
    schema = table.schema
    if PASSAGE_ID not in schema.names:
        add = {PASSAGE_ID: _PASSAGE_ID_SQL}
        return "adding the passage key to its rows", lambda: table.add_columns(add)
    field = schema.field(PASSAGE_ID)
    if field.nullable:
        required: Any = {"path": PASSAGE_ID, "nullable": False}  # bool, not str
        return "making the passage key required", lambda: table.alter_columns(required)
    if not any(k.startswith(_PRIMARY_KEY_METADATA) for k in field.metadata or {}):
        return (
            "declaring the passage key its primary key",
            lambda: table.set_unenforced_primary_key(PASSAGE_ID),  # type: ignore[attr-defined]
        )
    return None
