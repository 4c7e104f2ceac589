"""The whole pipeline on real services.

RabbitMQ and PostgreSQL are the machine's; the task service and the workers are
real processes started with their CLIs (the session's, ``session_workers``);
Elasticsearch is the server of the ``es_url`` fixture. Nothing runs in-process but
the test's own HTTP calls.
"""

from __future__ import annotations

import pytest

from ml_worker import store
from ml_worker.icij.task_client import ICIJTaskClient
from tests.known_items import (
    BATCH_SIZE,
    LONG_DOC,
    N_DOCS,
    SEARCH,
    assert_known_items_first,
    seed_known_items,
)
from tests.stack import run_task

pytestmark = pytest.mark.e2e


async def test_vectorize_and_search_a_project(session_workers, es, project):
    url, vectors = session_workers.url, session_workers.settings["vector_db_uri"]
    doc_ids = await seed_known_items(es, project)

    async with ICIJTaskClient(url) as client:
        args = {"project": project, "batch_size": BATCH_SIZE}
        summary = await run_task(client, "create_vectorization_tasks", args)
        assert summary["batches"] == -(-N_DOCS // BATCH_SIZE)
        assert summary["model"] == "english"
        assert (summary["documents"], summary["new"]) == (N_DOCS, N_DOCS)
        assert summary["failed"] == 0

        table = store.open_table(store.connect(vectors), project)
        rows = table.to_arrow().select(["doc_id", "passage"]).to_pylist()
        assert {r["doc_id"] for r in rows} == doc_ids
        passages = [(r["doc_id"], r["passage"]) for r in rows]
        assert len(passages) == len(set(passages))
        assert sum(1 for doc_id, _ in passages if doc_id == LONG_DOC) > 5

        args = {"project": project, **SEARCH}
        results = await run_task(client, "find_most_similar", args)

    assert_known_items_first(results)
