"""A project's vectorization on icij-worker: its batches as child tasks.

The fan-out task creates each batch as a ``vectorize_docs`` task through the task
API it is configured with (icij-worker's task service, or Datashare's), follows it
to its end, and keeps ``batches_in_flight`` of them queued or running at once
(``ml_worker.fanout``). The fan-out worker is busy for the whole run: a pool runs
several (``pool.FANOUT_WORKERS``), one for each vectorization at once.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from elasticsearch import AsyncElasticsearch
from icij_worker import TaskState

from ml_worker import documents, tasks
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, VECTORIZE_DOCS, task_group
from ml_worker.dependencies import lifespan_config, lifespan_es_client
from ml_worker.exceptions import TaskServiceError
from ml_worker.fanout import BatchCounts, BatchFailed, FanOutState, run_fan_out
from ml_worker.icij.dependencies import lifespan_task_client
from ml_worker.invoke import Progress, invoke
from ml_worker.task_client import TaskClient, wait_for_task

logger = logging.getLogger(__name__)

# A batch left behind by a cancelled run is asked to stop for this long at most.
_CANCEL_TIMEOUT_S = 10.0


async def vectorize_project(
    args: dict[str, Any], *, progress: Progress | None = None
) -> dict[str, Any]:
    """``create_vectorization_tasks`` on a worker: ``tasks.prepare_vectorization``,
    then the batches as child tasks; returns the run's ``VectorizationSummary``."""
    state = await invoke(
        tasks.prepare_vectorization, args, task=CREATE_VECTORIZATION_TASKS
    )
    batches = TaskBatches(
        lifespan_task_client(),
        lifespan_es_client(),
        state,
        retry_s=lifespan_config().es_retry_s,
        progress=progress,
    )
    await run_fan_out(state, batches)
    logger.info("project %s: %s batches run", state.project, state.summary.batches)
    return state.summary.as_result()


class TaskBatches:
    """Batches as ``vectorize_docs`` tasks of a task API (a ``fanout.BatchRunner``)."""

    def __init__(
        self,
        client: TaskClient,
        es_client: AsyncElasticsearch,
        state: FanOutState,
        *,
        retry_s: float = documents.DEFAULT_RETRY_S,
        progress: Progress | None = None,
    ):
        self._client, self._es, self._state = client, es_client, state
        self._retry_s, self._progress = retry_s, progress

    async def id_page(self, after: str | None, size: int) -> list[str]:
        return await documents.document_id_page(
            self._es,
            self._state.project,
            page_size=size,
            after=after,
            retry_s=self._retry_s,
        )

    async def run_batch(self, docs: list[str]) -> BatchCounts:
        # The run's user was checked granted the project before its first
        # batch; its batches run as the fan-out's own client (Datashare shows a
        # task to its user only, and the fan-out follows them).
        args: dict[str, Any] = {"docs": docs, "project": self._state.project}
        task_id = await self._client.create_task(
            VECTORIZE_DOCS, args, group=task_group(VECTORIZE_DOCS)
        )
        try:
            task = await wait_for_task(self._client, task_id)
        except asyncio.CancelledError:
            await self._cancel(task_id)
            raise
        if task.state is TaskState.DONE:
            return BatchCounts.of(
                await self._client.get_task_result(task_id, done=True)
            )
        if task.state is TaskState.ERROR:
            errors = await self._client.get_task_errors(task_id)
            error = errors[-1].error if errors else None
            what = f"{error.name}: {error.message}" if error else "no error recorded"
            raise BatchFailed(f"batch {task_id} failed: {what}")
        raise BatchFailed(f"batch {task_id} was cancelled")

    async def progress(self, done: int, total: int) -> None:
        if self._progress is not None:
            await self._progress(done / total if total else 1.0)

    async def _cancel(self, task_id: str) -> None:
        """Stop a batch the cancelled run no longer waits for (its worker may
        have it done already)."""
        with suppress(TaskServiceError, TimeoutError):
            async with asyncio.timeout(_CANCEL_TIMEOUT_S):
                await asyncio.shield(self._client.cancel_task(task_id))
