"""Datashare's way in: tasks submitted to its task API, run by the real workers.

Datashare cannot run here, so its task API is the contract double of
``tests/datashare_double.py``; Datashare's own part, queueing each task for the
workers and learning its state from them, is ``TaskBridge``: every task goes to
icij-worker's real task service, which queues it on the machine's RabbitMQ for real
worker processes. The fan-out creates its batch tasks through the double and follows
them there, as it would through Datashare.
"""

from __future__ import annotations

import itertools

import pytest

from ml_worker import store
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.datashare_api import DatashareTaskClient
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus
from tests.datashare_double import DatashareDouble
from tests.stack import running_stack, wait_done
from tests.task_bridge import TaskBridge

pytestmark = pytest.mark.e2e

API_KEY = "ds-api-key"


async def test_a_project_vectorized_from_datashare(
    tmp_path, es, es_url, rabbitmq, postgres, project
):
    items, doc_ids = datashare_corpus(40)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    with DatashareDouble(api_key=API_KEY, granted=[project]) as datashare:
        settings = {
            "task_service": "datashare",
            "task_service_url": datashare.url,
            "task_service_api_key": API_KEY,
        }
        with running_stack(
            tmp_path,
            es_url=es_url,
            rabbitmq=rabbitmq,
            postgres=postgres,
            worker_settings=settings,
        ) as (url, config, _):
            # Datashare's part: the tasks to the workers' broker, their states back.
            TaskBridge(datashare, url)
            async with DatashareTaskClient(datashare.url, api_key=API_KEY) as client:
                parent = await client.create_task(
                    CREATE_VECTORIZATION_TASKS,
                    {"project": project, "batch_size": 8},
                    group=task_group(CREATE_VECTORIZATION_TASKS),
                )
            async with ICIJTaskClient(url) as service:
                await wait_done(service, [parent])
                summary = await service.get_task_result(parent)

    assert summary is not None
    assert datashare.tasks[parent]["args"]["user"]  # Datashare's argument, accepted
    created = [
        r
        for r in datashare.requests
        if r.method == "PUT" and r.path.startswith("/api/task/vectorize_docs")
    ]
    assert len(created) == summary["batches"] == 5
    assert (summary["new"], summary["failed"]) == (len(doc_ids), 0)
    assert all(r.query.get("group") == "PYTHON" for r in created)  # Datashare's
    auth = [
        {k.lower(): v for k, v in r.headers.items()}["authorization"] for r in created
    ]
    assert auth == [f"bearer {API_KEY}"] * len(created)
    table = store.open_table(store.connect(config["vector_db_uri"]), project)
    chunks = store.stored_document_id_chunks(table, chunk_rows=10_000)
    assert set(itertools.chain.from_iterable(chunks)) == doc_ids
