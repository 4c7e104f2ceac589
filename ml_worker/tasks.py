"""The worker's tasks, as plain async functions.

Each task takes its dependencies as keyword arguments; left out, they are the
worker process's own (see ``ml_worker.dependencies``). Blocking work (the model,
LanceDB) runs in a thread so the worker's event loop keeps its broker heartbeats.
Every task accepts and ignores ``user``, the argument Datashare adds to every task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import lancedb
from elasticsearch import AsyncElasticsearch

from ml_worker import dependencies as deps
from ml_worker import documents, store, upkeep
from ml_worker.arguments import Number, Positive, Queries, Strings, checked
from ml_worker.chunking import (
    PASSAGE_OVERLAP_TOKENS,
    PASSAGE_TOKENS,
    Passage,
    split_passages,
)
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import VECTORIZE_DOCS, task_group
from ml_worker.documents import Document
from ml_worker.embedding import ModelEmbedder
from ml_worker.model_choice import choose_model
from ml_worker.search import Filters, Scoring, SearchMode, search_queries
from ml_worker.task_client import TaskClient

logger = logging.getLogger(__name__)

# The share of a task done, reported as it goes. icij-worker's RateProgress is the
# same signature, but importing it (icij_worker.typing_) imports icij-worker whole:
# the tasks stay free of any task engine's module, so that another engine than
# icij-worker's runs them as they are.
Progress = Callable[[float], Awaitable[None]]


@checked
async def ping(*, user: dict | str | None = None) -> str:
    """``user``: added by Datashare, ignored."""
    return "pong"


@dataclasses.dataclass(frozen=True)
class VectorizationPlan:
    """How a project's documents are split: what every engine's fan-out follows."""

    total: int  # documents in the index when counted
    batch_size: int  # documents per vectorize_docs batch
    page_size: int  # ids read from Elasticsearch at a time
    model: str  # the project's model: an alias where it has one
    model_choice: str  # why that model (see model_choice.choose_model)


async def prepare_vectorization(
    project: str,
    *,
    model: str | None = None,
    batch_size: Positive | None = None,
    rebuild: bool = False,
    config: MLWorkerConfig,
    es_client: AsyncElasticsearch,
    vector_db: lancedb.DBConnection,
) -> VectorizationPlan:
    """Everything a fan-out does before its batches: checks the arguments, counts
    the documents, drops the table on ``rebuild``, creates it with ``model`` (or the
    one ``auto`` chooses from the project's languages), and deletes the rows of
    documents no longer in the index (incremental runs)."""
    if batch_size is None:
        batch_size = config.vectorize_batch_size
    store.table_name(project)
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
    gone = await _delete_gone_documents(es_client, table, project, config)
    if gone:
        logger.info(
            "project %s: removed %s documents gone from the index", project, gone
        )
    logger.info("project %s: model %s (%s)", project, choice.model, choice.reason)
    return VectorizationPlan(
        total, batch_size, config.es_page_size, choice.model, choice.reason
    )


@checked
async def create_vectorization_tasks(
    project: str,
    *,
    model: str | None = None,
    batch_size: Positive | None = None,
    rebuild: bool = False,
    user: dict | str | None = None,
    config: MLWorkerConfig | None = None,
    es_client: AsyncElasticsearch | None = None,
    task_client: TaskClient | None = None,
    vector_db: lancedb.DBConnection | None = None,
    progress: Progress | None = None,
) -> dict:
    """Create one ``vectorize_docs`` task per batch of the project's documents.

    Incremental unless ``rebuild``: rows of documents no longer in the index are
    deleted, and the batch tasks skip documents whose content did not change.
    ``model``: an alias (``english``, ``multilingual``), a sentence-transformers
    id or folder, or ``auto`` (chosen from the project's languages); unset, the
    workers' ``ML_WORKER_MODEL``. Returns ``{"tasks": the batch tasks' ids,
    "documents": documents counted, "model": the project's model, "model_choice":
    why that one}``. ``user``: added by Datashare, ignored.
    """
    config = config or deps.lifespan_config()
    es_client = es_client or deps.lifespan_es_client()
    task_client = task_client or deps.lifespan_task_client()
    if vector_db is None:  # not `or`: a database without tables is falsy
        vector_db = deps.lifespan_vector_db()
    plan = await prepare_vectorization(
        project,
        model=model,
        batch_size=batch_size,
        rebuild=rebuild,
        config=config,
        es_client=es_client,
        vector_db=vector_db,
    )
    total = plan.total
    # Each batch task is created as soon as its ids are read: memory stays that of a
    # page and a batch, whatever the project's size. Each page is retried through an
    # outage; one that outlasts es_retry_s fails the task, and the worker runs it
    # again from the start. The batches it then creates again are harmless: writing
    # a batch is idempotent, and its unchanged documents are skipped by their hash.
    pages = documents.document_id_pages(
        es_client, project, page_size=plan.page_size, retry_s=config.es_retry_s
    )
    task_ids, created = [], 0
    async for batch in _batches(pages, plan.batch_size):
        task_ids.append(await _create_batch_task(task_client, project, batch))
        created += len(batch)
        if progress is not None:
            # Counted at the start: documents indexed since may outnumber it.
            await progress(created / max(total, created))
    if progress is not None and created < total:
        await progress(1.0)  # documents deleted since the count
    logger.info("project %s: %s batch tasks created", project, len(task_ids))
    return {
        "tasks": task_ids,
        "documents": total,
        "model": plan.model,
        "model_choice": plan.model_choice,
    }


async def _delete_gone_documents(
    es_client: AsyncElasticsearch, table, project: str, config: MLWorkerConfig
) -> int:
    """Deletes the rows of documents no longer in the index; returns how many.

    The table's doc_ids are read by chunks, and Elasticsearch asked which of each
    chunk's are still documents: memory stays that of a chunk.
    """
    chunks = store.stored_document_id_chunks(
        table, chunk_rows=config.gone_check_chunk_size
    )
    # A document's rows follow each other and may span chunks: it is deleted once.
    previous: set[str] = set()
    gone = 0
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        indexed = await documents.indexed_document_ids(
            es_client, project, chunk, retry_s=config.es_retry_s
        )
        missing = set(chunk) - indexed
        to_delete = sorted(missing - previous)
        if to_delete:
            await asyncio.to_thread(store.delete_documents, table, to_delete)
        gone += len(to_delete)
        previous = missing
    return gone


async def _batches(
    pages: AsyncIterator[list[str]], size: int
) -> AsyncIterator[list[str]]:
    """The ids of ``pages`` regrouped ``size`` at a time."""
    batch: list[str] = []
    async for page in pages:
        for doc_id in page:
            batch.append(doc_id)
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


async def _create_batch_task(client: TaskClient, project: str, batch: list[str]) -> str:
    args = {"docs": batch, "project": project}
    return await client.create_task(
        VECTORIZE_DOCS, args, group=task_group(VECTORIZE_DOCS)
    )


@checked
async def vectorize_docs(
    docs: list[str],
    project: str,
    *,
    user: dict | str | None = None,
    config: MLWorkerConfig | None = None,
    es_client: AsyncElasticsearch | None = None,
    vector_db: lancedb.DBConnection | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the passages of these documents to the project's table.

    Returns the number of documents (re)embedded: those whose content is new or
    changed. Writing a batch again (a redelivered task) replaces its rows: each
    document ends up with exactly its passages. ``user``: added by Datashare, ignored.
    """
    config = config or deps.lifespan_config()
    es_client = es_client or deps.lifespan_es_client()
    if vector_db is None:  # not `or`: a database without tables is falsy
        vector_db = deps.lifespan_vector_db()
    table = await asyncio.to_thread(store.writable_table, vector_db, project)
    fetched = await documents.fetch_documents(
        es_client, project, docs, retry_s=config.es_retry_s
    )
    missing = len(docs) - len(fetched)
    if missing:
        logger.warning("project %s: %s documents no longer indexed", project, missing)
    if progress is not None:
        await progress(0.1)
    changed = await asyncio.to_thread(_changed_documents, table, fetched)
    written = await asyncio.to_thread(
        _write_passages, table, _capped(changed, config.max_content_chars)
    )
    logger.info(
        "project %s: %s documents vectorized, %s unchanged",
        project,
        written,
        len(fetched) - len(changed),
    )
    if written:
        # Past a size, the table needs a vector index, and new rows folded into it.
        await asyncio.to_thread(upkeep.ensure_indices, table)
    return written


def _changed_documents(table, docs: list[Document]) -> list[Document]:
    stored = store.stored_hashes(table, [d.id for d in docs])
    return [d for d in docs if stored.get(d.id) != {d.content_hash}]


def _capped(docs: list[Document], max_chars: int) -> list[Document]:
    capped = []
    for doc in docs:
        if len(doc.content) > max_chars:
            logger.warning(
                "document %s: only the first %s of its %s characters are vectorized",
                doc.id,
                max_chars,
                len(doc.content),
            )
            doc = dataclasses.replace(doc, content=doc.content[:max_chars])
        capped.append(doc)
    return capped


def _write_passages(table, docs: list[Document]) -> int:
    if not docs:
        return 0
    embedder = store.table_embedder(table)
    rows = [
        _passage_row(doc, passage)
        for doc in docs
        for passage in passages_of(doc.content, embedder)
    ]
    store.replace_documents(table, [d.id for d in docs], rows)
    return len(docs)


def passages_of(content: str, embedder: ModelEmbedder) -> list[Passage]:
    """The passages a content is cut into for this model.

    A content without text still gets one empty passage: so recorded, it counts as
    vectorized and a re-run skips it, and no search ever finds it.
    """
    passages = split_passages(
        content,
        embedder.tokenizer,
        max_tokens=min(PASSAGE_TOKENS, embedder.max_tokens),
        overlap_tokens=PASSAGE_OVERLAP_TOKENS,
    )
    return passages or [Passage(store.NO_TEXT_PASSAGE, 0, 0, "")]


def _passage_row(doc: Document, passage: Passage) -> dict:
    row = store.PassageRow(
        doc_id=doc.id,
        root_id=doc.root_id,
        passage=passage.index,
        start=passage.start,
        end=passage.end,
        content=passage.text,
        path=doc.path,
        title=doc.title,
        content_type=doc.content_type,
        language=doc.language,
        tags=doc.tags,
        content_hash=doc.content_hash,
    )
    return dataclasses.asdict(row)


@checked
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
    user: dict | str | None = None,
    vector_db: lancedb.DBConnection | None = None,
) -> list[list[dict]]:
    """For each query, the ``n_similar`` most relevant documents, best first.

    Only documents matching every given filter are searched: ``languages`` and
    ``content_types`` (any of the values), ``path_prefix``, ``tags`` (any of them).
    Documents scoring below ``min_score`` are left out. ``user``: added by
    Datashare, ignored.
    """
    filters = Filters.of(
        languages=languages,
        content_types=content_types,
        path_prefix=path_prefix,
        tags=tags,
    )
    if vector_db is None:  # not `or`: a database without tables is falsy
        vector_db = deps.lifespan_vector_db()
    table = store.open_table(vector_db, project)
    return await asyncio.to_thread(
        search_queries,
        table,
        queries,
        mode=mode,
        n_similar=n_similar,
        scoring=scoring,
        where=filters.sql(),
        min_score=min_score,
    )
