"""Project tables in the LanceDB vector store: one table per Datashare project.

A row is one passage of one document. The table's schema carries the embedding
function, so LanceDB computes the ``vector`` of every added row from its ``content``
and the vector of every query from its text.

A table may live on any LanceDB URI: a local directory, ``s3://``, ``s3+ddb://``,
``gs://``, ``az://``. Workers on many hosts write it at once with no lock between
them: Lance's commit protocol keeps it exact (see ``replace_documents``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlparse

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
from ml_worker.embedding import E5Embedder, Embedder, ModelEmbedder, embedder
from ml_worker.exceptions import (
    InvalidProject,
    ModelMismatch,
    ProjectNotVectorized,
    TableBusy,
    UnsafeObjectStore,
)
from ml_worker.model_files import model_id
from ml_worker.text_analysis import analysis_for

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
# The same key computed by Lance from a row of a table made before it existed.
_PASSAGE_ID_SQL = (
    f"concat({DOC_ID}, '/', coalesce({CONTENT_HASH}, ''), '/',"
    f" CAST({PASSAGE} AS VARCHAR))"
)
# How Lance marks the primary key in a field's metadata (it has no getter).
_PRIMARY_KEY_METADATA = b"lance-schema:unenforced-primary-key"
# Schema metadata: why the table has its model (ml_worker.model_choice).
_MODEL_CHOICE = "ml_worker.model_choice"
# Migration steps that lost a race with another worker's are looked at again.
_MIGRATION_ATTEMPTS = 6
# Rounds of re-writing passages that two writers inserted at once (see _one_row_each).
_TWIN_ROUNDS = 5
# A batch's write, started again when other writers' commits kept winning.
_WRITE_ATTEMPTS = 4
_MIB = 1024 * 1024
# Bounds the length of the SQL filters built from document ids.
_IDS_PER_FILTER = 1000

# Lance table names are directory names: no path separators, no dot-dot.
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")


def project_tables(db: lancedb.DBConnection) -> list[str]:
    """The names of every table in ``db``, sorted, page after page."""
    names: list[str] = []
    token = None
    while True:
        page = db.list_tables(page_token=token)
        names.extend(page.tables)
        token = page.page_token
        if not token:
            return sorted(names)


def table_name(project: str) -> str:
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        msg = (
            f"invalid project {project!r}: a project id is 1 to 255 letters, digits,"
            f" '_' or '-', starting with a letter or digit"
        )
        raise InvalidProject(msg)
    return project


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


def connect(
    uri: str,
    *,
    storage_options: dict[str, str] | None = None,
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
    return lancedb.connect(
        uri, storage_options=storage_options or None, session=session
    )


def connect_from(config: MLWorkerConfig) -> lancedb.DBConnection:
    """The database of these settings, with their object store and cache bounds."""
    options = config.vector_db_storage_options
    return connect(
        config.vector_db_uri,
        storage_options={k: v.get_secret_value() for k, v in options.items()},
        index_cache_mb=config.vector_db_index_cache_mb,
        metadata_cache_mb=config.vector_db_metadata_cache_mb,
    )


# The S3 buckets (by endpoint) this process found safe to write to.
_SAFE_BUCKETS: set[tuple[str | None, str]] = set()


def refuse_unsafe_store(db: lancedb.DBConnection) -> None:
    """Fail before any write unless the database's store keeps concurrent commits.

    On ``s3://``, Lance commits a table version with a conditional PUT of its
    manifest (``If-None-Match: *``): of two writers committing the same version, the
    store must refuse the second. A store that ignores the condition loses commits
    silently (4 appending processes kept 2,810 of 7,000 rows, no error). So a probe
    key is PUT twice with the condition, once per process and bucket; a second PUT
    that succeeds fails the write. ``s3+ddb://`` commits through DynamoDB, ``gs://``
    and ``az://`` have native preconditions, local paths atomic renames: no probe.
    """
    url = urlparse(db.uri)
    if url.scheme != "s3":
        return
    # Here only: importing boto3 took 0.25 s of every command that reads a table.
    import boto3
    from botocore.exceptions import ClientError

    # LanceDB's local connection keeps its options; its type does not say so.
    options = getattr(db, "storage_options", None) or {}
    client_args = _boto3_client_args(options)
    bucket = url.netloc
    if (client_args.get("endpoint_url"), bucket) in _SAFE_BUCKETS:
        return
    client = boto3.client("s3", **client_args)
    key = "/".join(p for p in (url.path.strip("/"), f".probe-{uuid.uuid4().hex}") if p)
    client.put_object(Bucket=bucket, Key=key, Body=b"", IfNoneMatch="*")
    try:
        client.put_object(Bucket=bucket, Key=key, Body=b"", IfNoneMatch="*")
    except ClientError as e:
        if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 412:
            raise
    else:
        msg = (
            f"the object store of {db.uri} ignores conditional writes (a second PUT"
            f" with If-None-Match: * succeeded): concurrent commits would overwrite"
            f" each other and lose rows. Use a store that honours them, or an"
            f" external manifest store in DynamoDB:"
            f" s3+ddb://{bucket}{url.path}?ddbTableName=<table>"
        )
        raise UnsafeObjectStore(msg)
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    _SAFE_BUCKETS.add((client_args.get("endpoint_url"), bucket))


# LanceDB's S3 storage options (object_store's names and aliases) -> boto3's.
_BOTO3_ARGS = {
    **dict.fromkeys(["aws_access_key_id", "access_key_id"], "aws_access_key_id"),
    **dict.fromkeys(
        ["aws_secret_access_key", "secret_access_key"], "aws_secret_access_key"
    ),
    **dict.fromkeys(
        ["aws_session_token", "aws_token", "session_token", "token"],
        "aws_session_token",
    ),
    **dict.fromkeys(
        ["aws_region", "region", "aws_default_region", "default_region"],
        "region_name",
    ),
    **dict.fromkeys(
        ["aws_endpoint", "aws_endpoint_url", "endpoint", "endpoint_url"],
        "endpoint_url",
    ),
}
_VIRTUAL_HOSTED = {"aws_virtual_hosted_style_request", "virtual_hosted_style_request"}


def _boto3_client_args(storage_options: dict[str, str]) -> dict:
    """boto3 client arguments reaching the store as LanceDB does.

    ``allow_http`` needs no counterpart: boto3 follows the endpoint's scheme.
    Options left out (credentials, region) come from boto3's own environment
    variables and files, as they do for LanceDB.
    """
    from botocore.config import Config as BotoConfig

    options = {k.lower(): v for k, v in storage_options.items()}
    args = {_BOTO3_ARGS[k]: v for k, v in options.items() if k in _BOTO3_ARGS}
    virtual = any(options.get(k, "").lower() == "true" for k in _VIRTUAL_HOSTED)
    args["config"] = BotoConfig(
        # LanceDB addresses buckets by path unless told otherwise.
        s3={"addressing_style": "virtual" if virtual else "path"},
        connect_timeout=10,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        # Checksums only where S3 requires them, as LanceDB: not every
        # S3-compatible store accepts boto3's default ones.
        request_checksum_calculation="when_required",
    )
    return args


def open_or_create_table(
    db: lancedb.DBConnection,
    project: str,
    *,
    model: str,
    embed_batch_size: int,
    languages: Mapping[str, int] | None = None,
    model_choice: str = "",
) -> Table:
    """The project's table, created for ``model`` if it does not exist yet, with
    a full-text analysis for ``languages``, its documents' counts by language;
    ``model_choice``, why that model, is kept with it (see ``table_model_choice``)."""
    name = table_name(project)
    refuse_unsafe_store(db)
    try:
        table = db.open_table(name)
    except ValueError:  # not found
        return _create_table(
            db,
            name,
            model=model,
            embed_batch_size=embed_batch_size,
            analysis=analysis_for(languages or {}),
            model_choice=model_choice,
        )
    existing = table_model(table)
    if existing != model_id(model):
        msg = (
            f'project "{project}" is vectorized with model "{existing}", not'
            f' "{model}": rebuild it to change its model'
        )
        raise ModelMismatch(msg)
    _ensure_passage_key(table)
    return table


def writable_table(db: lancedb.DBConnection, project: str) -> Table:
    """The project's table, to write a batch to: its store checked, its key there."""
    refuse_unsafe_store(db)
    table = open_table(db, project)
    _ensure_passage_key(table)
    return table


def _create_table(
    db: lancedb.DBConnection,
    name: str,
    *,
    model: str,
    embed_batch_size: int,
    analysis: FTS,
    model_choice: str,
) -> Table:
    function = embedder(model, embed_batch_size)
    schema = passage_schema(function.ndims())
    table = db.create_table(
        name,
        # LanceDB adds its embedding function's to this metadata.
        schema=schema.with_metadata({_MODEL_CHOICE: model_choice}),
        embedding_functions=[
            EmbeddingFunctionConfig(
                source_column=CONTENT, vector_column=VECTOR, function=function
            )
        ],
        exist_ok=True,  # another worker may have created it meanwhile
    )
    _ensure_passage_key(table, analysis)
    return table


def _ensure_passage_key(table: Table, analysis: FTS | None = None) -> None:
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
        step = _next_key_step(table, analysis)
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


def _next_key_step(
    table: Table, analysis: FTS | None = None
) -> tuple[str, Callable[[], object]] | None:
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


def open_table(db: lancedb.DBConnection, project: str) -> Table:
    name = table_name(project)
    try:
        return db.open_table(name)
    except (FileNotFoundError, ValueError) as e:
        msg = f'project "{project}" has no vectors yet: run create_vectorization_tasks'
        raise ProjectNotVectorized(msg) from e


def table_embedder(table: Table) -> ModelEmbedder:
    config = table.embedding_functions[VECTOR]
    if not isinstance(config.function, (Embedder, E5Embedder)):
        raise TypeError(f"table {table.name} was not created by ml_worker")
    return config.function


def table_model(table: Table) -> str:
    return table_embedder(table).name


def table_model_choice(table: Table) -> str:
    """Why the table has its model, as told when it was created; empty for a table
    created before this was kept."""
    return (table.schema.metadata or {}).get(_MODEL_CHOICE.encode(), b"").decode()


def existing_model(db: lancedb.DBConnection, project: str) -> str | None:
    """The model the project's table was created with; None when it has none."""
    try:
        return table_model(open_table(db, project))
    except ProjectNotVectorized:
        return None


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
    retrying_commits(table, lambda: _replace(table, doc_ids, rows), _WRITE_ATTEMPTS)


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
    stale = _in_filter(doc_ids)
    if kept:
        stale += f" AND NOT ({_key_filter(kept)})"
    # A delete commits a version even when it matches nothing, as it does for new
    # documents; the count reads the same version, so it skips no row.
    if table.count_rows(stale):
        table.delete(stale)


def _one_row_each(table: Table, new: pa.Table) -> None:
    """Leave one row for each passage key of ``new``, whoever else wrote them.

    Lance 13 sees two merge-inserts adding the same primary key only when neither
    looked the keys up in a scalar index (lance-format/lance#9238): with the
    passage key's B-tree, 4 writers of the same 20 batches at once left 633 rows for
    161 keys; without it, 161. The index stays, since without it each write scans
    the key column (250 ms a batch at a million passages, 9 ms with it). Instead
    each write counts its keys' rows through the index once it has committed: the
    last of two writers of a batch sees both copies. It deletes the twins and
    inserts them again by a merge-insert that does not use the index, which Lance
    checks against every concurrent insert of the same keys; a fresh count tells
    whether another write slipped in between.
    """
    keys = new[PASSAGE_ID].to_pylist()
    for _ in range(_TWIN_ROUNDS):
        table.checkout_latest()
        stored = (
            table.search()
            .where(_key_filter(keys))
            .select([PASSAGE_ID])
            .limit(None)
            .to_arrow()[PASSAGE_ID]
        )
        twins = sorted(k for k, n in Counter(stored.to_pylist()).items() if n > 1)
        if not twins:
            return
        logger.info(
            "table %s: %s passages written twice at once", table.name, len(twins)
        )
        table.delete(_key_filter(twins))
        again = new.filter(pc.is_in(new[PASSAGE_ID], pa.array(twins)))
        (
            table.merge_insert(PASSAGE_ID)
            .use_index(False)
            .when_not_matched_insert_all()
            .execute(again)
        )
    raise RuntimeError(
        f"table {table.name}: passages kept being written twice at once"
        f" after {_TWIN_ROUNDS} rounds; the batch is retried"
    )


def is_commit_conflict(error: Exception) -> bool:
    """Whether Lance gave up a commit because other writers committed first."""
    text = str(error).lower()
    return any(
        words in text
        for words in ("conflict", "already exists", "retryable", "too many concurrent")
    )


def _key_filter(keys: list[str]) -> str:
    return f"{PASSAGE_ID} IN ({', '.join(sql_string(k) for k in keys)})"


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


def drop_table(db: lancedb.DBConnection, project: str) -> None:
    refuse_unsafe_store(db)
    with contextlib.suppress(ValueError):  # not found: nothing to rebuild
        db.drop_table(table_name(project))


def stored_document_id_chunks(table: Table, *, chunk_rows: int) -> Iterator[list[str]]:
    """The doc_ids of the table's rows, ``chunk_rows`` rows at a time, each chunk's once.

    A stream from the table's version at the first chunk: by chunks of 10,000, the
    doc_ids of 10 M rows were read in 1.3 s with 130 MiB more memory; read whole, in
    11.4 s with 2.5 GiB more. A document whose rows span two chunks is in both.
    """
    batches = table.search().select([DOC_ID]).limit(None).to_batches(chunk_rows)
    for batch in batches:
        yield pc.unique(batch.column(DOC_ID)).to_pylist()


def stored_hashes(table: Table, doc_ids: list[str]) -> dict[str, set[str]]:
    """The content hashes each of these documents' passages were embedded from.

    Two hashes: a write was interrupted between its two commits (see
    ``replace_documents``), or two versions were written at once.
    """
    if not doc_ids:
        return {}
    rows = (
        table.search()
        .where(_in_filter(doc_ids))
        .select([DOC_ID, CONTENT_HASH])
        .limit(None)
        .to_list()
    )
    hashes: dict[str, set[str]] = {}
    for row in rows:
        hashes.setdefault(row[DOC_ID], set()).add(row[CONTENT_HASH])
    return hashes


def delete_documents(table: Table, doc_ids: list[str]) -> None:
    for start in range(0, len(doc_ids), _IDS_PER_FILTER):
        table.delete(_in_filter(doc_ids[start : start + _IDS_PER_FILTER]))


def _in_filter(doc_ids: list[str]) -> str:
    return f"{DOC_ID} IN ({', '.join(sql_string(i) for i in doc_ids)})"


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"
