"""A project table's rows: their columns, the passage key, and SQL conditions on them.

A row is one passage of one document. ``PassageRow`` is the one definition of the
columns a worker writes; the table adds the passage's vector, which LanceDB computes
from ``content`` with the embedding function kept in the table's schema, and the
passage key, the table's primary key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import pyarrow as pa

CONTENT = "content"
VECTOR = "vector"
DOC_ID = "doc_id"
PASSAGE = "passage"
# A document without text is one row with this passage number and empty content:
# recorded as vectorized (a re-run skips it), never found by a search.
NO_TEXT_PASSAGE = -1
CONTENT_HASH = "content_hash"
# A row's key, the table's primary key: see passage_id().
PASSAGE_ID = "passage_id"
# Lance's id of a row, read with ``with_row_id(True)`` and usable in conditions.
ROW_ID = "_rowid"

_ARROW = "arrow"


def _column(arrow_type: pa.DataType, *, nullable: bool = True) -> dict:
    """A ``PassageRow`` field's metadata: its column's type in the table."""
    return {_ARROW: (arrow_type, nullable)}


@dataclass(frozen=True)
class PassageRow:
    """A table row: one passage of a document, with the document's fields that
    searches filter on and return. The one definition of the table's columns:
    ``passage_schema`` adds the vector and the passage key to these."""

    doc_id: str = field(metadata=_column(pa.string(), nullable=False))
    root_id: str | None = field(metadata=_column(pa.string()))
    # Its rank in the document; NO_TEXT_PASSAGE for a document without text.
    passage: int = field(metadata=_column(pa.int32(), nullable=False))
    # Character offsets in the document's content: content[start:end].
    start: int = field(metadata=_column(pa.int64(), nullable=False))
    end: int = field(metadata=_column(pa.int64(), nullable=False))
    content: str = field(metadata=_column(pa.string(), nullable=False))
    path: str | None = field(metadata=_column(pa.string()))
    title: str | None = field(metadata=_column(pa.string()))
    content_type: str | None = field(metadata=_column(pa.string()))
    language: str | None = field(metadata=_column(pa.string()))
    tags: list[str] = field(metadata=_column(pa.list_(pa.string())))
    # Tells a re-run which documents changed and must be embedded again.
    content_hash: str | None = field(metadata=_column(pa.string()))


# PassageRow's columns, in the table's order.
PASSAGE_COLUMNS = tuple(f.name for f in fields(PassageRow))


def passage_schema(ndims: int) -> pa.Schema:
    """A table's schema: PassageRow's columns, the vector after the content (where
    tables have always had it), then the passage key."""
    columns = []
    for column in fields(PassageRow):
        arrow_type, nullable = column.metadata[_ARROW]
        columns.append(pa.field(column.name, arrow_type, nullable=nullable))
        if column.name == CONTENT:
            columns.append(pa.field(VECTOR, pa.list_(pa.float32(), ndims)))
    return pa.schema([*columns, pa.field(PASSAGE_ID, pa.string(), nullable=False)])


def passage_id(doc_id: str, content_hash: str | None, passage: int) -> str:
    """The key of a passage of one version of a document's text.

    The content hash gives each version of a document keys of its own, so writing
    a new version never matches the rows of the old one. Read from the right (a
    hex hash, a number), the key is unambiguous whatever the document id holds.
    """
    return f"{doc_id}/{content_hash or ''}/{passage}"


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def documents_filter(doc_ids: list[str]) -> str:
    """The SQL condition of these documents' rows."""
    return f"{DOC_ID} IN ({', '.join(sql_string(i) for i in doc_ids)})"


def keys_filter(keys: list[str]) -> str:
    """The SQL condition of the rows of these passage keys."""
    return f"{PASSAGE_ID} IN ({', '.join(sql_string(k) for k in keys)})"
