"""A project's vectorization fanned out in batches: the loop every engine runs, its
first step, and its batches as child tasks of a task API (the icij engine's).

Elasticsearch is the session's server, reached through a TCP proxy where a test
cuts it off. Child tasks go to Datashare's task API (its contract double: Datashare
cannot run here), which completes them as a worker would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from urllib.parse import urlparse

import pytest

from ml_worker import documents, store, tasks
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import ENGLISH_MODEL, MULTILINGUAL_MODEL, VECTORIZE_DOCS
from ml_worker.engines import engine_for
from ml_worker.es_client import es_client
from ml_worker.fanout import (
    BatchCounts,
    BatchFailed,
    FanOutState,
    VectorizationSummary,
    run_fan_out,
    whole_batches,
)
from ml_worker.icij.fanout import TaskBatches
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import free_port
from tests.corpus import datashare_corpus, filler
from tests.faults import TcpProxy


@pytest.fixture
async def seeded(es, project) -> set[str]:
    items, doc_ids = datashare_corpus(23)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


class Batches:
    """A ``fanout.BatchRunner`` that runs nothing: it reads the ids from
    Elasticsearch as the engines do, and records the batches and the progress.
    ``hold`` keeps each batch running until released; ``fail`` makes the batches
    holding one of these ids fail."""

    def __init__(self, es, project: str, *, hold: bool = False, fail=()):
        self._es, self._project = es, project
        self.batches: list[list[str]] = []
        self.progress_seen: list[tuple[int, int]] = []
        self.running = 0
        self.most_running = 0
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self._fail = set(fail)

    async def id_page(self, after: str | None, size: int) -> list[str]:
        return await documents.document_id_page(
            self._es, self._project, page_size=size, after=after, retry_s=30
        )

    async def run_batch(self, docs: list[str]) -> BatchCounts:
        self.batches.append(docs)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        if self._fail & set(docs):
            raise BatchFailed(f"batch of {docs[0]} failed")
        return BatchCounts(documents=len(docs), new=len(docs))

    async def progress(self, done: int, total: int) -> None:
        self.progress_seen.append((done, total))


def _state(project: str, total: int, *, batch_size=5, page_size=3, window=4):
    summary = VectorizationSummary(project=project, model="m", model_choice="test")
    return FanOutState(
        project=project,
        total=total,
        batch_size=batch_size,
        page_size=page_size,
        window=window,
        summary=summary,
    )


async def test_pages_make_whole_batches(es, project, seeded):
    batches = Batches(es, project)
    state = _state(project, len(seeded), batch_size=5, page_size=whole_batches(12, 5))

    assert await run_fan_out(state, batches)

    # Every document once, embedded ones included, named entities left out.
    assert sorted(itertools.chain(*batches.batches)) == sorted(seeded)
    assert any(i.endswith("-attachment") for i in seeded)
    n = len(seeded)
    assert [len(b) for b in batches.batches] == [5] * (n // 5) + [n % 5]
    done = [d for d, _ in batches.progress_seen]
    assert done == sorted(done) and batches.progress_seen[-1] == (n, n)
    summary = state.summary
    assert (summary.batches, summary.documents, summary.new) == (5, n, n)


async def test_no_more_than_the_window_of_batches_run_at_once(es, project, seeded):
    batches = Batches(es, project, hold=True)
    state = _state(project, len(seeded), batch_size=2, page_size=10, window=3)
    run = asyncio.create_task(run_fan_out(state, batches))

    async with asyncio.timeout(60):
        while batches.running < 3:
            await asyncio.sleep(0.01)
    # Held, the window is full: the fan-out waits for a batch to end.
    assert len(batches.batches) == 3
    batches.release.set()
    assert await run

    assert batches.most_running == 3
    assert sorted(itertools.chain(*batches.batches)) == sorted(seeded)


async def test_a_failed_batch_is_counted_and_the_run_goes_on(es, project, seeded):
    first = sorted(seeded)[0]
    batches = Batches(es, project, fail=[first])
    state = _state(project, len(seeded), batch_size=5, page_size=10)

    assert await run_fan_out(state, batches)

    summary = state.summary
    assert summary.failed == 5 and summary.new == len(seeded) - 5
    assert summary.failures == [f"batch of {first} failed"]


async def test_a_run_stops_after_its_pages_and_resumes_from_its_state(
    es, project, seeded
):
    batches = Batches(es, project)
    state = _state(project, len(seeded), batch_size=2, page_size=10)

    assert not await run_fan_out(state, batches, max_pages=1)
    assert len(list(itertools.chain(*batches.batches))) == 10
    assert state.after == sorted(seeded)[9]
    assert await run_fan_out(state, batches, max_pages=1) is False
    assert await run_fan_out(state, batches, max_pages=1)

    assert sorted(itertools.chain(*batches.batches)) == sorted(seeded)
    assert state.summary.documents == len(seeded) == state.done


async def test_cancelling_stops_the_batches(es, project, seeded):
    batches = Batches(es, project, hold=True)
    state = _state(project, len(seeded), batch_size=1, page_size=10, window=3)
    run = asyncio.create_task(run_fan_out(state, batches))
    async with asyncio.timeout(60):
        while batches.running < 3:
            await asyncio.sleep(0.01)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run

    # The running batches were cancelled with it, and none was started after.
    assert batches.running == 0
    assert len(batches.batches) == 3


async def test_an_outage_between_pages_resumes_where_it_stopped(
    es_url, project, seeded, caplog
):
    target = urlparse(es_url)
    proxy = TcpProxy(target.hostname, target.port, free_port())
    proxy.start()
    es = es_client(proxy.url)
    batches = Batches(es, project)
    state = _state(project, len(seeded), batch_size=2, page_size=4)
    cut = False

    async def cut_after_the_first_batch(done: int, total: int) -> None:
        # The first page is read: the next one meets the outage.
        nonlocal cut
        if not cut:
            cut = True
            proxy.stop()
            asyncio.get_running_loop().call_later(1.5, proxy.start)

    batches.progress = cut_after_the_first_batch  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="ml_worker"):
            assert await run_fan_out(state, batches)
    finally:
        await es.close()
        proxy.close()

    assert cut and f"Elasticsearch at {proxy.url} failed" in caplog.text
    # Resumed, not started over: every document in exactly one batch.
    assert sorted(itertools.chain(*batches.batches)) == sorted(seeded)


async def _prepare(project, config, es, vector_db, **kwargs) -> FanOutState:
    return await tasks.prepare_vectorization(
        project,
        config=config,
        es_client=es,
        vector_db=vector_db,
        engine=engine_for(config),
        **kwargs,
    )


async def test_a_project_in_other_languages_gets_the_multilingual_model(
    es, es_url, project, vector_db
):
    await create_project_index(es, project)
    french = [
        (f"fr-{i}", document_source("Un texte.", path="/f", language="FRENCH"), None)
        for i in range(8)
    ]
    english = [
        (f"en-{i}", document_source("A text.", path="/e"), None) for i in range(2)
    ]
    await bulk_index(es, project, french + english)
    config = MLWorkerConfig(es_address=es_url)  # model: auto

    state = await _prepare(project, config, es, vector_db)

    assert state.total == 10
    assert state.summary.model == "multilingual"
    assert state.summary.model_choice == "auto: 80% FRENCH, 20% ENGLISH"
    table = store.open_table(vector_db, project)
    assert store.table_model(table) == MULTILINGUAL_MODEL
    assert store.table_model_choice(table) == state.summary.model_choice

    # Later runs keep the table's model, whatever the languages have become.
    more = [(f"en-{i}", document_source("A text.", path="/e"), None) for i in range(90)]
    await bulk_index(es, project, more)
    again = await _prepare(project, config, es, vector_db)
    assert again.summary.model == "multilingual"
    assert again.summary.model_choice == "the project's table was created with it"
    # A model named by the task must be the table's.
    with pytest.raises(store.ModelMismatch, match="rebuild it"):
        await _prepare(project, config, es, vector_db, model="english")
    rebuilt = await _prepare(
        project, config, es, vector_db, model="english", rebuild=True
    )
    assert (rebuilt.summary.model, rebuilt.summary.model_choice) == (
        "english",
        "named by the task",
    )


async def test_documents_gone_from_the_index_are_deleted_chunk_by_chunk(
    es, es_url, project, vector_db, caplog
):
    rng = random.Random(2)
    contents = {f"doc-{i}": filler(rng, 3) for i in range(6)}
    # Rows of many passages: its rows span several chunks.
    contents["gone-long"] = filler(rng, 200)
    contents |= {"gone-1": filler(rng, 3), "gone-2": filler(rng, 3)}
    await create_project_index(es, project)
    await bulk_index(
        es,
        project,
        [
            (i, document_source(c, path=f"/leak/{i}.txt"), None)
            for i, c in contents.items()
        ],
    )
    config = MLWorkerConfig(es_address=es_url, gone_check_chunk_size=4)
    store.open_or_create_table(
        vector_db, project, model=ENGLISH_MODEL, embed_batch_size=32
    )
    await tasks.vectorize_docs(
        list(contents), project, config=config, es_client=es, vector_db=vector_db
    )
    for gone in ("gone-long", "gone-1", "gone-2"):
        await es.delete(index=project, id=gone, refresh=True)
    table = store.open_table(vector_db, project)
    rows = table.search().select(["doc_id"]).limit(None).to_list()
    assert sum(r["doc_id"] == "gone-long" for r in rows) > 2 * 4
    status = await tasks.vectorization_status(
        project, config=config, es_client=es, vector_db=vector_db
    )
    assert (status["removed"], status["new"]) == (3, 0)

    with caplog.at_level(logging.INFO, logger="ml_worker"):
        state = await _prepare(project, config, es, vector_db)

    table.checkout_latest()
    stored = {
        r["doc_id"] for r in table.search().select(["doc_id"]).limit(None).to_list()
    }
    assert stored == {f"doc-{i}" for i in range(6)}
    assert state.summary.removed == 3
    assert "removed 3 documents gone from the index" in caplog.text


async def test_batches_are_child_tasks_followed_to_their_end(
    es, project, seeded, datashare, datashare_client
):
    def complete(task: dict, group: str | None) -> None:
        # As a worker would, once the task is stored.
        docs = task["args"]["docs"]
        datashare.complete(task["id"], {"documents": len(docs), "unchanged": 1})

    datashare.on_create = complete
    state = _state(project, len(seeded), batch_size=10, page_size=100)
    progress: list[float] = []

    async def record(p: float) -> None:
        progress.append(p)

    batches = TaskBatches(datashare_client, es, state, progress=record)
    assert await run_fan_out(state, batches)

    children = [t for t in datashare.tasks.values() if t["name"] == VECTORIZE_DOCS]
    assert len(children) == 3
    assert all(t["args"]["project"] == project for t in children)
    assert all(t["args"]["defaultProject"] == project for t in children)
    # Created as the fan-out's own client, which Datashare then lets follow them.
    assert all(t["args"]["user"]["id"] == datashare.login for t in children)
    assert state.summary.unchanged == 3 and progress[-1] == 1.0


async def test_a_failed_child_task_fails_its_batch(
    es, project, datashare, datashare_client
):
    def fail(task: dict, group: str | None) -> None:
        datashare.fail(task["id"], "TableBusy", "other writers kept committing")

    datashare.on_create = fail
    await create_project_index(es, project)
    await bulk_index(es, project, [("a", document_source("A text.", path="/a"), None)])
    state = _state(project, 1)

    assert await run_fan_out(state, TaskBatches(datashare_client, es, state))

    assert state.summary.failed == 1
    (failure,) = state.summary.failures
    assert failure.endswith("failed: TableBusy: other writers kept committing")
