"""Project tables in the LanceDB vector store: one table per Datashare project.

A row is one passage of one document. The table's schema carries the embedding
function, so LanceDB computes the ``vector`` of every added row from its ``content``
and the vector of every query from its text.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.embeddings import EmbeddingFunctionConfig
from lancedb.index import FTS
from lancedb.table import Table

from ml_worker.config import (
    VECTOR_DB_INDEX_CACHE_MB,
    VECTOR_DB_METADATA_CACHE_MB,
    MLWorkerConfig,
)
from ml_worker.embedding import Embedder, embedder

CONTENT = "content"
VECTOR = "vector"
DOC_ID = "doc_id"
PASSAGE = "passage"
# A document without text is one row with this passage number and empty content:
# recorded as vectorized (a re-run skips it), never found by a search.
NO_TEXT_PASSAGE = -1
CONTENT_HASH = "content_hash"
_MIB = 1024 * 1024
# Bounds the length of the SQL filters built from document ids.
_IDS_PER_FILTER = 1000

# Lance table names are directory names: no path separators, no dot-dot.
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")


class InvalidProject(ValueError):
    pass


class ProjectNotVectorized(LookupError):
    pass


class ModelMismatch(ValueError):
    pass


def table_name(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        msg = (
            f"invalid project {project!r}: a project id is 1 to 255 letters, digits,"
            f" '_' or '-', starting with a letter or digit"
        )
        raise InvalidProject(msg)
    return project


def passage_schema(ndims: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field(DOC_ID, pa.string(), nullable=False),
            pa.field("root_id", pa.string()),
            pa.field(PASSAGE, pa.int32(), nullable=False),
            pa.field("start", pa.int64(), nullable=False),
            pa.field("end", pa.int64(), nullable=False),
            pa.field(CONTENT, pa.string(), nullable=False),
            pa.field(VECTOR, pa.list_(pa.float32(), ndims)),
            pa.field("path", pa.string()),
            pa.field("title", pa.string()),
            pa.field("content_type", pa.string()),
            pa.field("language", pa.string()),
            pa.field("tags", pa.list_(pa.string())),
            # Tells a re-run which documents changed and must be embedded again.
            pa.field(CONTENT_HASH, pa.string()),
        ]
    )


def connect(
    uri: str,
    *,
    index_cache_mb: int = VECTOR_DB_INDEX_CACHE_MB,
    metadata_cache_mb: int = VECTOR_DB_METADATA_CACHE_MB,
) -> lancedb.DBConnection:
    """The database, with caches of bounded size.

    Unbounded, a worker's memory would grow with the projects it writes: every
    version a write commits (two a batch) leaves its manifest, which lists all the
    table's fragments, in the metadata cache: 142 MiB after 450 batches of one
    project. A search of a million passages keeps about 220 MiB of index data.
    """
    session = lancedb.Session(
        index_cache_size_bytes=index_cache_mb * _MIB,
        metadata_cache_size_bytes=metadata_cache_mb * _MIB,
    )
    return lancedb.connect(uri, session=session)


def connect_from(config: MLWorkerConfig) -> lancedb.DBConnection:
    """The database of these settings, with their cache bounds."""
    return connect(
        config.vector_db_uri,
        index_cache_mb=config.vector_db_index_cache_mb,
        metadata_cache_mb=config.vector_db_metadata_cache_mb,
    )


def open_or_create_table(
    db: lancedb.DBConnection, project: str, *, model: str, embed_batch_size: int
) -> Table:
    """The project's table, created for ``model`` if it does not exist yet."""
    name = table_name(project)
    try:
        table = db.open_table(name)
    except ValueError:  # not found
        return _create_table(db, name, model=model, embed_batch_size=embed_batch_size)
    existing = table_model(table)
    if existing != model:
        msg = (
            f'project "{project}" is vectorized with model "{existing}", not'
            f' "{model}": rebuild it to change its model'
        )
        raise ModelMismatch(msg)
    return table


def _create_table(
    db: lancedb.DBConnection, name: str, *, model: str, embed_batch_size: int
) -> Table:
    function = embedder(model, embed_batch_size)
    table = db.create_table(
        name,
        schema=passage_schema(function.ndims()),
        embedding_functions=[
            EmbeddingFunctionConfig(
                source_column=CONTENT, vector_column=VECTOR, function=function
            )
        ],
        exist_ok=True,  # another worker may have created it meanwhile
    )
    # Unindexed rows stay searchable, so the index can be built on the empty table.
    table.create_index(CONTENT, config=FTS(), replace=False)
    return table


def open_table(db: lancedb.DBConnection, project: str) -> Table:
    name = table_name(project)
    try:
        return db.open_table(name)
    except (FileNotFoundError, ValueError) as e:
        msg = f'project "{project}" has no vectors yet: run create_vectorization_tasks'
        raise ProjectNotVectorized(msg) from e


def table_embedder(table: Table) -> Embedder:
    config = table.embedding_functions[VECTOR]
    if not isinstance(config.function, Embedder):
        raise TypeError(f"table {table.name} was not created by ml_worker")
    return config.function


def table_model(table: Table) -> str:
    return table_embedder(table).name


def replace_documents(table: Table, doc_ids: list[str], rows: list[dict]) -> None:
    """Make ``rows`` the only passages of these documents.

    The documents' rows are deleted, then ``rows`` added in one commit, so a
    document never mixes passages of two versions of its text; between the two
    commits (milliseconds) it has none. Written again (a replayed batch), the same
    rows replace themselves.

    Not a merge-insert: deleting the target rows that the new ones do not replace
    makes Lance scan the whole table, 0.5 s a batch at a million passages, where
    the delete is answered by the doc_id index.
    """
    rows = _with_vectors(table, rows)
    with _exclusive_writes(table):
        # The delete must see the rows other writers committed since this handle
        # was opened, or it leaves them beside the new ones.
        table.checkout_latest()
        table.delete(_in_filter(doc_ids))
        if rows:
            table.add(rows)


def _with_vectors(table: Table, rows: list[dict]) -> list[dict]:
    """``rows`` with their vectors, computed by the table's own embedding function.

    Embedding is the slow part of a write: done here, before the write lock, it
    runs in parallel on every worker.
    """
    if not rows:
        return rows
    vectors = table_embedder(table).compute_source_embeddings([r[CONTENT] for r in rows])
    return [{**row, VECTOR: vector} for row, vector in zip(rows, vectors)]


@contextmanager
def _exclusive_writes(table: Table):
    """One writer at a time on a local table.

    Two writes of the same documents that run at once (a batch redelivered while its
    first worker still writes it) would both add their passages, each deleting before
    the other adds: Lance sees no conflict between two appends. A lock file beside
    the table serializes the writers of every process sharing its directory; tables
    on object stores (s3://, gs://) have no such lock.
    """
    path = Path(table.uri)
    if "://" in table.uri or not path.parent.is_dir():
        yield
        return
    with open(path.parent / f".{path.name}.write-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def drop_table(db: lancedb.DBConnection, project: str) -> None:
    try:
        db.drop_table(table_name(project))
    except ValueError:  # not found: nothing to rebuild
        pass


def stored_document_id_chunks(table: Table, *, chunk_rows: int) -> Iterator[list[str]]:
    """The doc_ids of the table's rows, ``chunk_rows`` rows at a time, each chunk's once.

    A stream from the table's version at the first chunk: by chunks of 10,000, the
    doc_ids of 10 M rows were read in 1.3 s with 130 MiB more memory; read whole, in
    11.4 s with 2.5 GiB more. A document whose rows span two chunks is in both.
    """
    batches = table.search().select([DOC_ID]).limit(None).to_batches(chunk_rows)
    for batch in batches:
        yield pc.unique(batch.column(DOC_ID)).to_pylist()


def stored_hashes(table: Table, doc_ids: list[str]) -> dict[str, str]:
    """The content hash each of these documents was embedded from, if any."""
    if not doc_ids:
        return {}
    rows = (
        table.search()
        .where(_in_filter(doc_ids))
        .select([DOC_ID, CONTENT_HASH])
        .limit(None)
        .to_list()
    )
    return {r[DOC_ID]: r[CONTENT_HASH] for r in rows}


def delete_documents(table: Table, doc_ids: list[str]) -> None:
    for start in range(0, len(doc_ids), _IDS_PER_FILTER):
        table.delete(_in_filter(doc_ids[start : start + _IDS_PER_FILTER]))


def _in_filter(doc_ids: list[str]) -> str:
    return f"{DOC_ID} IN ({', '.join(sql_string(i) for i in doc_ids)})"


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
