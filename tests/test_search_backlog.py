"""A search is answered while a project's batches fill the broker.

Real RabbitMQ, PostgreSQL, task service and worker processes, one pool per kind of
worker, as ``ml-worker workers start --kind ...`` runs them. The backlog is a real
fan-out: one-document batches, so that hundreds of them cost little to create.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import pytest

from ml_worker import store
from ml_worker.cli.follow import search_project
from ml_worker.constants import WorkerKind
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import (
    task_stack,
    wait_for_workers,
    worker_pool,
)
from tests.corpus import datashare_corpus
from tests.stack import create_table, submit_batches, wait_done

pytestmark = pytest.mark.e2e

BACKLOG = 600
AT_LEAST_QUEUED = 500
# A search answers in well under a second on an idle stack; one behind the backlog
# would wait for its 600 batches, minutes on one vectorizing worker.
ANSWERED_WITHIN_S = 30.0


async def _index(es, project: str, items) -> None:
    await create_project_index(es, project)
    await bulk_index(es, project, items)


def _wait_queued(rabbitmq, vhost: str, at_least: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        depth = rabbitmq.task_queue(vhost, WorkerKind.VECTORIZE.group).waiting
        if depth >= at_least or time.monotonic() > deadline:
            return depth
        time.sleep(0.5)


async def test_a_search_is_answered_before_the_backlog_drains(
    tmp_path, es, es_url, rabbitmq, postgres, project
):
    searched, backlog = project, f"{project}-backlog"
    items, _ = datashare_corpus(20)
    await _index(es, searched, items)
    tiny = (
        (
            f"note-{i:04d}",
            document_source(f"Note {i}.", path=f"/notes/{i:04d}.txt"),
            None,
        )
        for i in range(BACKLOG)
    )
    await _index(es, backlog, tiny)

    with ExitStack() as stack:
        vhost, url, settings = stack.enter_context(
            task_stack(tmp_path, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url)
        )
        config = {**settings, "torch_threads": 1}

        def start(kind: WorkerKind):
            workdir = tmp_path / kind.value
            workdir.mkdir()
            pool = stack.enter_context(
                worker_pool(
                    workdir,
                    n_workers=1,
                    rabbitmq=rabbitmq,
                    vhost=vhost,
                    ml_worker_config=config,
                    kind=kind,
                )
            )
            return pool, workdir / "workers.log"

        pools = {k: start(k) for k in (WorkerKind.SEARCH, WorkerKind.FANOUT)}
        for kind, (pool, log) in pools.items():
            wait_for_workers(rabbitmq, vhost, 1, pool, kind=kind, log=log)

        async with ICIJTaskClient(url) as client:
            # The searched project's batch first, then the backlog's, all queued
            # before any vectorizing worker runs: its one worker takes them in order.
            db = store.connect(config["vector_db_uri"])
            for name in (searched, backlog):
                create_table(db, name)
            (batch,) = await submit_batches(client, es, searched, batch_size=20)
            backlog_ids = await submit_batches(client, es, backlog, batch_size=1)
            assert len(backlog_ids) == BACKLOG
            pool, log = start(WorkerKind.VECTORIZE)
            # First thing on the way out: what is left is dropped, not drained.
            stack.callback(rabbitmq.purge_task_queue, vhost, WorkerKind.VECTORIZE.group)
            wait_for_workers(
                rabbitmq, vhost, 1, pool, kind=WorkerKind.VECTORIZE, log=log
            )
            await wait_done(client, [batch])
            queued = _wait_queued(rabbitmq, vhost, AT_LEAST_QUEUED)
            assert queued >= AT_LEAST_QUEUED, f"only {queued} batches queued"

            started = time.monotonic()
            search = search_project(client, searched, ["offshore trust"], n_similar=3)
            try:
                results = await asyncio.wait_for(search, ANSWERED_WITHIN_S)
            except TimeoutError:
                waited = f"{ANSWERED_WITHIN_S:.0f} s, {queued} batches queued"
                pytest.fail(f"no answer within {waited}")
            answered_s = time.monotonic() - started
            left = rabbitmq.task_queue(vhost, WorkerKind.VECTORIZE.group).waiting

    assert len(results[0]) == 3
    # The management API's count lags by up to its 5 s statistics interval: the
    # backlog takes far longer than that to drain.
    assert left > 0, f"the backlog drained before the answer, in {answered_s:.1f} s"
