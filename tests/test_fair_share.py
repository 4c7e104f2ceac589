"""Two projects vectorized at once share the workers (icij-worker's engine; the
Temporal engine's twin is in test_temporal.py).

A project's vectorization keeps one batch more than the vectorizing workers in
flight: a small project started beside a large one queues its batches beside the
large one's few, so it ends while the large one still runs, where queued behind all
of the large one's batches it ended after them. The stack is the session's
(``session_workers``: two vectorizing workers, two fan-out workers).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from icij_worker import TaskState

from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from tests.corpus import filler
from tests.stack import TIMEOUT_S, wait_done

pytestmark = pytest.mark.e2e

LARGE_BATCHES = 24
SMALL_BATCHES = 2


async def _index(es, project: str, n_docs: int, sentences: int) -> None:
    rng = random.Random(n_docs)
    await create_project_index(es, project)
    docs = [
        (f"{project}-{i}", document_source(filler(rng, sentences), path=f"/{i}"), None)
        for i in range(n_docs)
    ]
    await bulk_index(es, project, docs)


async def _submit(client: ICIJTaskClient, project: str) -> str:
    # A document a batch: as many batches as documents.
    args = {"project": project, "batch_size": 1}
    group = task_group(CREATE_VECTORIZATION_TASKS)
    return await client.create_task(CREATE_VECTORIZATION_TASKS, args, group=group)


async def test_a_small_project_ends_while_a_large_one_runs(session_workers, es):
    suffix = random.Random().getrandbits(32)
    large, small = f"fair-large-{suffix:x}", f"fair-small-{suffix:x}"
    # Long documents make long batches: several passages each.
    await _index(es, large, LARGE_BATCHES, sentences=60)
    await _index(es, small, SMALL_BATCHES, sentences=60)

    async with ICIJTaskClient(session_workers.url) as client:
        large_id = await _submit(client, large)
        async with asyncio.timeout(TIMEOUT_S):
            while ((await client.get_task(large_id)).progress or 0.0) <= 0.0:
                await asyncio.sleep(0.1)
        small_id = await _submit(client, small)
        await wait_done(client, [small_id])
        large_then = await client.get_task(large_id)
        await wait_done(client, [large_id])
        summary = await client.get_task_result(large_id)

    assert summary is not None
    assert large_then.state is TaskState.RUNNING, large_then.state
    assert large_then.progress is not None and large_then.progress < 1.0
    assert summary["new"] == LARGE_BATCHES and summary["batches"] == LARGE_BATCHES
