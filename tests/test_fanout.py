"""create_vectorization_tasks: the project's ids streamed into batch tasks.

Batch tasks are created through Datashare's task API (its contract double: Datashare
cannot run here), Elasticsearch is the session's server, reached through a TCP proxy
where a test cuts it off.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from urllib.parse import urlparse

import pytest

from ml_worker import store, tasks
from ml_worker.clients import es_client
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import ENGLISH_MODEL, MULTILINGUAL_MODEL
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import free_port
from tests.corpus import datashare_corpus, filler
from tests.datashare_double import DatashareDouble
from tests.faults import TcpProxy


@pytest.fixture
async def seeded(es, project) -> set[str]:
    items, doc_ids = datashare_corpus(23)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


def _batches(datashare: DatashareDouble, project: str) -> list[list[str]]:
    """The ``docs`` of the project's batch tasks, in the order they were created."""
    return [
        t["args"]["docs"]
        for t in list(datashare.tasks.values())
        if t["name"] == tasks.VECTORIZE_DOCS and t["args"]["project"] == project
    ]


async def _fan_out(project, config, es, task_client, vector_db, **kwargs) -> dict:
    return await tasks.create_vectorization_tasks(
        project,
        config=config,
        es_client=es,
        task_client=task_client,
        vector_db=vector_db,
        **kwargs,
    )


async def test_pages_smaller_than_a_batch_make_whole_batches(
    es, es_url, project, seeded, datashare_client, datashare, vector_db, tmp_path
):
    # 3 ids a page, 5 a batch: batches straddle pages.
    config = MLWorkerConfig(es_address=es_url, es_page_size=3)
    progress = []

    async def record(p: float) -> None:
        progress.append(p)

    result = await _fan_out(
        project, config, es, datashare_client, vector_db, batch_size=5, progress=record
    )
    task_ids = result["tasks"]

    batches = _batches(datashare, project)
    assert task_ids == [t for t in datashare.tasks if t.startswith("vectorize_docs")]
    # Every document once, embedded ones included, named entities left out.
    assert list(itertools.chain(*batches)) == sorted(seeded)
    assert any(i.endswith("-attachment") for i in seeded)
    assert [len(b) for b in batches[:-1]] == [5] * (len(batches) - 1)
    assert 0 < len(batches[-1]) <= 5
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(progress) == len(batches)


async def test_a_project_in_other_languages_gets_the_multilingual_model(
    es, es_url, project, datashare_client, vector_db
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

    result = await _fan_out(project, config, es, datashare_client, vector_db)

    assert result["documents"] == 10 and len(result["tasks"]) == 1
    assert result["model"] == "multilingual"
    assert result["model_choice"] == "auto: 80% FRENCH, 20% ENGLISH"
    table = store.open_table(vector_db, project)
    assert store.table_model(table) == MULTILINGUAL_MODEL
    assert store.table_model_choice(table) == result["model_choice"]

    # Later runs keep the table's model, whatever the languages have become.
    more = [(f"en-{i}", document_source("A text.", path="/e"), None) for i in range(90)]
    await bulk_index(es, project, more)
    again = await _fan_out(project, config, es, datashare_client, vector_db)
    assert again["model"] == "multilingual"
    assert again["model_choice"] == "the project's table was created with it"
    # A model named by the task must be the table's.
    with pytest.raises(store.ModelMismatch, match="rebuild it"):
        await _fan_out(
            project, config, es, datashare_client, vector_db, model="english"
        )
    rebuilt = await _fan_out(
        project, config, es, datashare_client, vector_db, model="english", rebuild=True
    )
    assert (rebuilt["model"], rebuilt["model_choice"]) == (
        "english",
        "named by the task",
    )


async def test_an_outage_between_pages_resumes_where_it_stopped(
    es_url, project, seeded, datashare_client, datashare, vector_db, caplog
):
    target = urlparse(es_url)
    proxy = TcpProxy(target.hostname, target.port, free_port())
    proxy.start()
    es = es_client(proxy.url)
    config = MLWorkerConfig(es_address=proxy.url, es_page_size=4, es_retry_s=30)
    cut = False

    async def cut_after_the_first_batch(_: float) -> None:
        # The first page is read: the next one meets the outage.
        nonlocal cut
        if not cut:
            cut = True
            proxy.stop()
            asyncio.get_running_loop().call_later(1.5, proxy.start)

    try:
        with caplog.at_level(logging.WARNING, logger="ml_worker"):
            await _fan_out(
                project,
                config,
                es,
                datashare_client,
                vector_db,
                batch_size=2,
                progress=cut_after_the_first_batch,
            )
    finally:
        await es.close()
        proxy.close()

    assert cut and f"Elasticsearch at {proxy.url} failed" in caplog.text
    # Resumed, not started over: every document in exactly one batch.
    assert list(itertools.chain(*_batches(datashare, project))) == sorted(seeded)


async def test_cancelling_stops_creating_batches(
    es, es_url, project, seeded, datashare_client, datashare, vector_db
):
    config = MLWorkerConfig(es_address=es_url)
    third = asyncio.Event()

    async def hold_at_the_third_batch(_: float) -> None:
        # Polling for the third batch raced the fan-out, which once created all
        # 23 before the test looked: it is held there until cancelled.
        if len(_batches(datashare, project)) == 3:
            third.set()
            await asyncio.Event().wait()

    fan_out = asyncio.create_task(
        _fan_out(
            project,
            config,
            es,
            datashare_client,
            vector_db,
            batch_size=1,
            progress=hold_at_the_third_batch,
        )
    )
    await asyncio.wait_for(third.wait(), timeout=60)
    fan_out.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fan_out
    await asyncio.sleep(0.2)  # a creation cancelled in flight may still land
    created = len(_batches(datashare, project))
    await asyncio.sleep(0.5)
    assert len(_batches(datashare, project)) == created < len(seeded)


async def test_documents_gone_from_the_index_are_deleted_chunk_by_chunk(
    es, es_url, project, datashare_client, datashare, vector_db, caplog
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

    with caplog.at_level(logging.INFO, logger="ml_worker"):
        await _fan_out(project, config, es, datashare_client, vector_db)

    table.checkout_latest()
    stored = {
        r["doc_id"] for r in table.search().select(["doc_id"]).limit(None).to_list()
    }
    assert stored == {f"doc-{i}" for i in range(6)}
    assert "removed 3 documents gone from the index" in caplog.text
    assert list(itertools.chain(*_batches(datashare, project))) == sorted(stored)
