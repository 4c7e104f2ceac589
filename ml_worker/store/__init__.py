"""Project tables in the LanceDB vector store: one table per Datashare project.

A row is one passage of one document (``schema``). The table's schema carries the
embedding function, so LanceDB computes the ``vector`` of every added row from its
``content`` and the vector of every query from its text.

A table may live on any LanceDB URI: a local directory, ``s3://``, ``s3+ddb://``,
``gs://``, ``az://``. Workers on many hosts write it at once with no lock between
them. Lance's commit protocol, a conditional write of each version's manifest,
keeps every commit (``object_store`` checks that an ``s3://`` store honours the
condition). It does not keep each passage once: Lance's check of two writers
inserting the same key is skipped when the key is looked up in its scalar index
(lance-format/lance PR 9238, an open draft), and the passage key has one. The
product's repair step does: each write, once committed, removes the copies that
check missed, keeping the first (``writes``).

The modules, each one concern: ``schema`` (the rows), ``connection`` (a database,
its caches), ``object_store`` (an S3 store's settings, read once, and its check),
``tables`` (a project's table: create, open, drop, its model), ``migration`` (the
set-up of a table of an earlier version), ``writes`` and ``reads``. Callers use
this package's names: ``from ml_worker import store; store.open_table(...)``.
"""

from ml_worker.exceptions import (
    InvalidProject,
    ModelMismatch,
    ProjectNotVectorized,
    TableBusy,
    UnsafeObjectStore,
)
from ml_worker.store.connection import connect, connect_from
from ml_worker.store.reads import (
    document_count,
    stored_document_id_chunks,
    stored_hashes,
)
from ml_worker.store.schema import (
    CONTENT,
    CONTENT_HASH,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
    PASSAGE_COLUMNS,
    PASSAGE_ID,
    VECTOR,
    PassageRow,
    passage_id,
    passage_schema,
    sql_string,
)
from ml_worker.store.tables import (
    check_project_name,
    drop_table,
    existing_model,
    open_or_create_table,
    open_table,
    project_tables,
    table_embedder,
    table_model,
    table_model_choice,
    writable_table,
)
from ml_worker.store.writes import (
    delete_documents,
    replace_documents,
    retrying_commits,
)

__all__ = [
    "CONTENT",
    "CONTENT_HASH",
    "DOC_ID",
    "NO_TEXT_PASSAGE",
    "PASSAGE",
    "PASSAGE_COLUMNS",
    "PASSAGE_ID",
    "VECTOR",
    "InvalidProject",
    "ModelMismatch",
    "PassageRow",
    "ProjectNotVectorized",
    "TableBusy",
    "UnsafeObjectStore",
    "check_project_name",
    "connect",
    "connect_from",
    "delete_documents",
    "document_count",
    "drop_table",
    "existing_model",
    "open_or_create_table",
    "open_table",
    "passage_id",
    "passage_schema",
    "project_tables",
    "replace_documents",
    "retrying_commits",
    "sql_string",
    "stored_document_id_chunks",
    "stored_hashes",
    "table_embedder",
    "table_model",
    "table_model_choice",
    "writable_table",
]
