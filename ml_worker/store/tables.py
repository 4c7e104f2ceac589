"""Project tables: one per Datashare project, named after it, created for a model."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping

import lancedb
from lancedb.embeddings import EmbeddingFunctionConfig
from lancedb.table import Table

from ml_worker.embedding import E5Embedder, Embedder, ModelEmbedder, embedder
from ml_worker.exceptions import (
    InvalidProject,
    ModelMismatch,
    ProjectNotVectorized,
    UnsafeObjectStore,
)
from ml_worker.model_files import model_id
from ml_worker.store.migration import ensure_passage_key
from ml_worker.store.object_store import refuse_unsafe_store
from ml_worker.store.schema import CONTENT, VECTOR, passage_schema
from ml_worker.text_analysis import analysis_for

# Lance table names are directory names: no path separators, no dot-dot.
_PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,254}$")
# Schema metadata: why the table has its model (ml_worker.model_choice).
_MODEL_CHOICE = "ml_worker.model_choice"


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


def check_project_name(project: str) -> None:
    """Refuse a project id that cannot name a table: ``InvalidProject``."""
    if not isinstance(project, str) or not _PROJECT_RE.match(project):
        msg = (
            f"invalid project {project!r}: a project id is 1 to 255 letters, digits,"
            f" '_' or '-', starting with a letter or digit"
        )
        raise InvalidProject(msg)


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
    ``model_choice``, why that model, is kept with it (see ``table_model_choice``).

    The store is checked (``refuse_unsafe_store``) before the table's first write
    but its creation, which the check needs: the table's first manifest."""
    check_project_name(project)
    try:
        table = db.open_table(project)
    except ValueError:  # not found
        table = _create_table(
            db,
            project,
            model=model,
            embed_batch_size=embed_batch_size,
            model_choice=model_choice,
        )
        try:
            refuse_unsafe_store(db, table)
        except UnsafeObjectStore:
            db.drop_table(project)  # nothing is left in a store that is refused
            raise
        ensure_passage_key(table, analysis_for(languages or {}))
        return table
    refuse_unsafe_store(db, table)
    existing = table_model(table)
    if existing != model_id(model):
        msg = (
            f'project "{project}" is vectorized with model "{existing}", not'
            f' "{model}": rebuild it to change its model'
        )
        raise ModelMismatch(msg)
    ensure_passage_key(table)
    return table


def writable_table(db: lancedb.DBConnection, project: str) -> Table:
    """The project's table, to write a batch to: its store checked, its key there."""
    table = open_table(db, project)
    refuse_unsafe_store(db, table)
    ensure_passage_key(table)
    return table


def _create_table(
    db: lancedb.DBConnection,
    name: str,
    *,
    model: str,
    embed_batch_size: int,
    model_choice: str,
) -> Table:
    """The table, empty, for ``model``: one commit, of its schema."""
    function = embedder(model, embed_batch_size)
    schema = passage_schema(function.ndims())
    return db.create_table(
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


def open_table(db: lancedb.DBConnection, project: str) -> Table:
    check_project_name(project)
    try:
        return db.open_table(project)
    except (FileNotFoundError, ValueError) as e:
        msg = f'project "{project}" has no vectors yet: vectorize it first'
        raise ProjectNotVectorized(msg) from e


def drop_table(db: lancedb.DBConnection, project: str) -> None:
    """Drop the project's table, if it has one, once its store is checked."""
    try:
        table = open_table(db, project)
    except ProjectNotVectorized:
        return  # nothing to rebuild
    refuse_unsafe_store(db, table)
    with contextlib.suppress(ValueError):  # dropped meanwhile by another worker
        db.drop_table(project)


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
