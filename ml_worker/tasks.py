"""The worker's tasks, as plain async functions: written once, run by every engine.

Each task takes its arguments (what a client submits, checked against the
function's signature by ``ml_worker.invoke``) and, keyword-only, the dependencies
the worker process hands it (``arguments.INJECTED``). Blocking work (the model,
LanceDB) runs in a thread so the worker's event loop keeps its heartbeats. Every
task accepts ``user``, the argument Datashare's clients put in every task: when
given, the user must be granted the task's project (``ml_worker.grants``).

``TASKS`` lists the tasks an engine registers as they are. A project's
vectorization is the one task an engine runs in parts: ``prepare_vectorization``
here, then ``fanout.run_fan_out`` with the engine's way of running a batch.
Adding a task: its function here, its entry in ``TASKS``, its worker kind in
``constants.TASK_KINDS``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import lancedb
from elasticsearch import AsyncElasticsearch

from ml_worker import documents, search, store, upkeep, vectorization
from ml_worker.arguments import Number, Positive, Queries, Strings
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import (
    FIND_MOST_SIMILAR,
    FIND_SIMILAR_DOCUMENTS,
    PING,
    VECTORIZATION_STATUS,
    VECTORIZE_DOCS,
    WorkerKind,
)
from ml_worker.engine import TaskEngine
from ml_worker.fanout import FanOutState, VectorizationSummary, whole_batches
from ml_worker.grants import User
from ml_worker.model_choice import alias, choose_model
from ml_worker.search import Filters, Scoring, SearchMode
from ml_worker.search.scale import ranking_threshold, readable

logger = logging.getLogger(__name__)

# The share of a task done, reported as it goes (icij-worker's RateProgress has the
# same signature; the tasks import no engine's module).
Progress = Callable[[float], Awaitable[None]]


async def ping(*, user: User = None) -> str:
    return "pong"


async def prepare_vectorization(
    project: str,
    *,
    model: str | None = None,
    batch_size: Positive | None = None,
    rebuild: bool = False,
    user: User = None,
    config: MLWorkerConfig,
    es_client: AsyncElasticsearch,
    vector_db: lancedb.DBConnection,
    engine: TaskEngine,
) -> FanOutState:
    """``create_vectorization_tasks``' arguments, and its first step on every
    engine: counts the project's documents, drops its table on ``rebuild``,
    creates the table with ``model`` (or the one ``auto`` chooses from the
    project's languages) and deletes the rows of documents no longer in the index.

    Incremental unless ``rebuild``: the batches skip documents whose content did
    not change. ``model``: an alias (``english``, ``multilingual``), a
    sentence-transformers id or folder, or ``auto``; unset, the workers'
    ``ML_WORKER_MODEL``. Returns the fan-out's starting point
    (``fanout.run_fan_out`` runs the batches).
    """
    store.check_project_name(project)
    await documents.check_mapping(es_client, project, retry_s=config.es_retry_s)
    total = await documents.count_documents(
        es_client, project, retry_s=config.es_retry_s
    )
    # A new table's model (under `auto`) and full-text analysis follow the
    # project's languages.
    languages = await documents.language_mix(
        es_client, project, retry_s=config.es_retry_s
    )
    if rebuild:
        await asyncio.to_thread(store.drop_table, vector_db, project)
    choice = choose_model(
        model or config.model,
        languages,
        existing=await asyncio.to_thread(store.existing_model, vector_db, project),
        named=model is not None,
    )
    table = await asyncio.to_thread(
        store.open_or_create_table,
        vector_db,
        project,
        model=choice.model,
        embed_batch_size=config.embed_batch_size,
        languages=languages,
        model_choice=choice.reason,
    )
    # Before the batches: the deletes then never compete with the run's own batch
    # writes for the table's commits, and a document deleted from the index stops
    # being found before the run starts.
    removed = await _delete_gone_documents(es_client, table, project, config)
    if removed:
        logger.info(
            "project %s: removed %s documents gone from the index", project, removed
        )
    logger.info("project %s: model %s (%s)", project, choice.model, choice.reason)
    summary = VectorizationSummary(
        project=project,
        model=choice.model,
        model_choice=choice.reason,
        removed=removed,
    )
    batch_size = batch_size or config.vectorize_batch_size
    window = config.batches_in_flight or await _window(engine)
    logger.info("project %s: %s batches in flight", project, window)
    return FanOutState(
        project=project,
        total=total,
        batch_size=batch_size,
        page_size=whole_batches(config.es_page_size, batch_size),
        window=window,
        summary=summary,
    )


# Batches in flight when the engine does not tell how many workers take them.
DEFAULT_WINDOW = 8


async def _window(engine: TaskEngine) -> int:
    """One more batch in flight than vectorizing workers: each has the next batch
    at hand, and a project started later waits behind about one batch a worker,
    where it waited behind every batch of the project before it (a 100-document
    project waited 721 s behind a 1,200-document one)."""
    workers = await engine.workers(WorkerKind.VECTORIZE)
    return workers + 1 if workers else DEFAULT_WINDOW


async def _delete_gone_documents(
    es_client: AsyncElasticsearch, table, project: str, config: MLWorkerConfig
) -> int:
    """Deletes the rows of documents no longer in the index; returns how many."""
    deleted = 0
    async for gone in _gone_documents(es_client, table, project, config):
        await asyncio.to_thread(store.delete_documents, table, gone)
        deleted += len(gone)
    return deleted


async def _gone_documents(
    es_client: AsyncElasticsearch, table, project: str, config: MLWorkerConfig
) -> AsyncIterator[list[str]]:
    """The table's documents no longer in the index, a chunk at a time.

    The table's doc_ids are read by chunks, and Elasticsearch asked which of each
    chunk's are still documents: memory stays that of a chunk.
    """
    chunks = store.stored_document_id_chunks(
        table, chunk_rows=config.gone_check_chunk_size
    )
    # A document's rows follow each other and may span chunks: it is told once.
    previous: set[str] = set()
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        indexed = await documents.indexed_document_ids(
            es_client, project, chunk, retry_s=config.es_retry_s
        )
        missing = set(chunk) - indexed
        if gone := sorted(missing - previous):
            yield gone
        previous = missing


async def vectorize_docs(
    docs: list[str],
    project: str,
    *,
    user: User = None,
    config: MLWorkerConfig,
    es_client: AsyncElasticsearch,
    vector_db: lancedb.DBConnection,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Write the passages of these documents to the project's table.

    Only documents whose content is new or changed are embedded. Writing a batch
    again (a redelivered task) replaces its rows: each document ends up with
    exactly its passages. Returns the batch's counts (``fanout.BatchCounts``).
    """
    table = await asyncio.to_thread(store.writable_table, vector_db, project)
    fetched = await documents.fetch_documents(
        es_client, project, docs, retry_s=config.es_retry_s
    )
    if len(fetched) < len(docs):
        logger.warning(
            "project %s: %s documents no longer indexed",
            project,
            len(docs) - len(fetched),
        )
    if progress is not None:
        await progress(0.1)
    counts = await asyncio.to_thread(
        vectorization.write_documents,
        table,
        fetched,
        max_chars=config.max_content_chars,
        requested=len(docs),
    )
    logger.info(
        "project %s: %s documents new, %s changed, %s unchanged",
        project,
        counts.new,
        counts.changed,
        counts.unchanged,
    )
    if counts.new or counts.changed:
        # Past a size, the table needs a vector index, and new rows folded into it.
        await asyncio.to_thread(upkeep.ensure_indices, table)
    return {
        "documents": counts.documents,
        "new": counts.new,
        "changed": counts.changed,
        "unchanged": counts.unchanged,
        "missing": counts.missing,
    }


async def find_most_similar(
    project: str,
    queries: Queries,
    *,
    n_similar: Positive = 10,
    mode: SearchMode = SearchMode.HYBRID,
    scoring: Scoring = Scoring.BEST_PASSAGE,
    languages: Strings = None,
    content_types: Strings = None,
    path_prefix: str | None = None,
    tags: Strings = None,
    min_score: Number | None = None,
    user: User = None,
    vector_db: lancedb.DBConnection,
) -> list[list[dict]]:
    """For each query, the ``n_similar`` most relevant documents, best first.

    Only documents matching every given filter are searched: ``languages`` and
    ``content_types`` (any of the values), ``path_prefix``, ``tags`` (any of them).
    Scores run from 0 to 1 (``search.scale``); documents scoring below ``min_score``
    are left out.
    """
    filters = Filters.of(
        languages=languages,
        content_types=content_types,
        path_prefix=path_prefix,
        tags=tags,
    )
    table = await asyncio.to_thread(store.open_table, vector_db, project)
    # A min_score on the scale of 0 to 1 is the ranking's threshold (a hair lower:
    # the two scales' round trip is a float's), then applied on its own scale.
    threshold = None
    if min_score is not None:
        threshold = ranking_threshold(min_score, mode, scoring)
        threshold -= 1e-9 * max(1.0, abs(threshold))
    results = await asyncio.to_thread(
        search.search_queries,
        table,
        queries,
        mode=mode,
        n_similar=n_similar,
        scoring=scoring,
        where=filters.sql(),
        min_score=threshold,
    )
    # Each document's score from 0 to 1, its score in the ranking kept beside it.
    readable_results = [
        [
            hit
            | {
                "score": readable(hit["score"], mode, scoring),
                "raw_score": hit["score"],
            }
            for hit in hits
        ]
        for hits in results
    ]
    return [
        [hit for hit in hits if min_score is None or hit["score"] >= min_score]
        for hits in readable_results
    ]


async def find_similar_documents(
    project: str,
    doc_id: str,
    *,
    n_similar: Positive = 10,
    languages: Strings = None,
    content_types: Strings = None,
    path_prefix: str | None = None,
    tags: Strings = None,
    min_score: Number | None = None,
    user: User = None,
    vector_db: lancedb.DBConnection,
) -> list[dict]:
    """The ``n_similar`` documents of the project most similar to ``doc_id``, best
    first, from its stored passage vectors (nothing is embedded again), each with
    the pair of passages that matched best and its relation to it
    (``near_duplicate``, ``translation`` or ``similar``). The same filters and
    ``min_score`` as ``find_most_similar``."""
    filters = Filters.of(
        languages=languages,
        content_types=content_types,
        path_prefix=path_prefix,
        tags=tags,
    )
    table = await asyncio.to_thread(store.open_table, vector_db, project)
    return await asyncio.to_thread(
        search.similar_documents,
        table,
        doc_id,
        n_similar=n_similar,
        filters=filters,
        min_score=min_score,
    )


# Up to this many documents, a project's status compares the table's ids with the
# index's: one Elasticsearch query per 10,000 ids, about a second. Past it, counts
# only, so that a status stays as quick as a search on the search workers.
EXACT_STATUS_MAX_DOCUMENTS = 200_000


async def vectorization_status(
    project: str,
    *,
    user: User = None,
    config: MLWorkerConfig,
    es_client: AsyncElasticsearch,
    vector_db: lancedb.DBConnection,
) -> dict[str, Any]:
    """Whether the project is vectorized, with which model, and how far its table
    is from its index: documents indexed and not vectorized yet (``new``), and
    vectorized ones no longer indexed (``removed``).

    Datashare's document ids are digests of the files, so a changed file is a new
    document. The same id with another text (extracted again) is found by the
    next vectorization, by its hash. Past ``EXACT_STATUS_MAX_DOCUMENTS``, ``new``
    and ``removed`` are the difference of the counts (``exact``: false).
    """
    store.check_project_name(project)
    await documents.check_mapping(es_client, project, retry_s=config.es_retry_s)
    total = await documents.count_documents(
        es_client, project, retry_s=config.es_retry_s
    )
    status: dict[str, Any] = {
        "project": project,
        "vectorized": False,
        "model": None,
        "model_choice": None,
        "documents": total,
        "vectorized_documents": 0,
        "passages": 0,
        "new": total,
        "removed": 0,
        "exact": True,
    }
    try:
        table = await asyncio.to_thread(store.open_table, vector_db, project)
    except store.ProjectNotVectorized:
        return status
    stored = await asyncio.to_thread(store.document_count, table)
    exact = max(total, stored) <= EXACT_STATUS_MAX_DOCUMENTS
    removed = max(stored - total, 0)
    if exact:
        removed = 0
        async for gone in _gone_documents(es_client, table, project, config):
            removed += len(gone)
    return status | {
        "vectorized": True,
        "model": alias(await asyncio.to_thread(store.table_model, table)),
        "model_choice": await asyncio.to_thread(store.table_model_choice, table),
        "vectorized_documents": stored,
        "passages": await asyncio.to_thread(table.count_rows),
        # Those indexed that the table lacks: all but the table's still indexed.
        "new": max(total - (stored - removed), 0),
        "removed": removed,
        "exact": exact,
    }


# The tasks every engine registers as they are, by name; the vectorization, run
# in parts, is not among them (see the module's docstring).
TASKS: dict[str, Callable[..., Awaitable[Any]]] = {
    PING: ping,
    VECTORIZE_DOCS: vectorize_docs,
    FIND_MOST_SIMILAR: find_most_similar,
    FIND_SIMILAR_DOCUMENTS: find_similar_documents,
    VECTORIZATION_STATUS: vectorization_status,
}
