"""The tasks as Temporal workflows, under the names Datashare starts them by.

Each workflow takes Datashare's ``args`` object and runs its work as activities on
the task queue of the worker kind that does it (``constants.TASK_KINDS``): the
workflows themselves only decide, so they never wait behind a model.

Vectorization fans out one ``vectorize_docs`` activity per batch and follows them.
Each run of the workflow reads one page of ids, at most ``MAX_BATCHES_PER_RUN``
batches, waits for them, then continues as new from the page's last id: a run's
history stays about 4 events a batch (a few thousand), whatever the project's size,
far under Temporal's limits (50,000 events, 2,000 pending activities).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ml_worker.constants import (
        CREATE_VECTORIZATION_TASKS,
        DOCUMENT_ID_PAGE,
        FIND_MOST_SIMILAR,
        MAX_PROGRESS_ATTRIBUTE,
        PING,
        PREPARE_VECTORIZATION,
        PROGRESS_ATTRIBUTE,
        TEMPORAL_WORKFLOWS,
        VECTORIZE_DOCS,
        WorkerKind,
        task_group,
    )

MAX_BATCHES_PER_RUN = 200
# A killed worker's activity is retried once its heartbeats stop this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# Outages (Elasticsearch, the table's commits) are retried with backoff; bad
# arguments are not retried at all (activities.py).
RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=10,
)
# The task queue each activity runs on: that of the worker kind that does it.
_QUEUES = {
    PING: task_group(PING),
    FIND_MOST_SIMILAR: task_group(FIND_MOST_SIMILAR),
    VECTORIZE_DOCS: task_group(VECTORIZE_DOCS),
    PREPARE_VECTORIZATION: WorkerKind.FANOUT.group,
    DOCUMENT_ID_PAGE: WorkerKind.FANOUT.group,
}
_PROGRESS = SearchAttributeKey.for_float(PROGRESS_ATTRIBUTE)
_MAX_PROGRESS = SearchAttributeKey.for_float(MAX_PROGRESS_ATTRIBUTE)


async def _activity(
    name: str, *args: Any, start_to_close: timedelta, heartbeat: bool = True
) -> Any:
    """Runs the activity ``name`` on its kind's task queue; an error it cannot
    recover from fails the workflow with the activity's own message."""
    try:
        return await workflow.execute_activity(
            name,
            args=args,
            task_queue=_QUEUES[name],
            start_to_close_timeout=start_to_close,
            heartbeat_timeout=HEARTBEAT_TIMEOUT if heartbeat else None,
            retry_policy=RETRIES,
        )
    except ActivityError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.non_retryable:
            raise ApplicationError(
                cause.message, type=cause.type, non_retryable=True
            ) from None
        raise


@workflow.defn(name=PING)
class Ping:
    @workflow.run
    async def run(self, args: dict) -> str:
        return await _activity(PING, args, start_to_close=timedelta(minutes=1))


@workflow.defn(name=FIND_MOST_SIMILAR)
class FindMostSimilar:
    @workflow.run
    async def run(self, args: dict) -> list[list[dict]]:
        return await _activity(
            FIND_MOST_SIMILAR, args, start_to_close=timedelta(minutes=10)
        )


@workflow.defn(name=VECTORIZE_DOCS)
class VectorizeDocs:
    @workflow.run
    async def run(self, args: dict) -> int:
        return await _activity(VECTORIZE_DOCS, args, start_to_close=timedelta(hours=1))


@dataclass
class FanOut:
    """Where a vectorization stands, handed from one run to the next."""

    project: str
    total: int
    batch_size: int
    page_size: int
    after: str | None = None  # the last id read
    batches: int = 0
    documents: int = 0
    vectorized: int = 0
    model: str = ""  # the project's model, and why (VectorizationPlan)
    model_choice: str = ""


@workflow.defn(name=CREATE_VECTORIZATION_TASKS)
class CreateVectorizationTasks:
    """Vectorizes a project: one ``vectorize_docs`` activity per batch of ids.

    Returns ``{"batches", "documents", "vectorized", "model", "model_choice"}``:
    batches run, documents read, documents (re)embedded, the project's model and
    why that one. Cancelled, it schedules no more batches and cancels those still
    running.
    """

    @workflow.run
    async def run(self, args: dict, fan_out: FanOut | None = None) -> dict:
        if fan_out is None:
            plan = await _activity(
                PREPARE_VECTORIZATION, args, start_to_close=timedelta(hours=1)
            )
            fan_out = FanOut(
                project=args["project"],
                total=plan["total"],
                batch_size=plan["batch_size"],
                page_size=min(
                    plan["page_size"], plan["batch_size"] * MAX_BATCHES_PER_RUN
                ),
                model=plan["model"],
                model_choice=plan["model_choice"],
            )
            self._show_progress(fan_out)
        page: list[str] = await _activity(
            DOCUMENT_ID_PAGE,
            fan_out.project,
            fan_out.after,
            fan_out.page_size,
            start_to_close=timedelta(minutes=10),
            heartbeat=False,
        )
        size = fan_out.batch_size
        batches = [page[i : i + size] for i in range(0, len(page), size)]
        written = await asyncio.gather(
            *(self._vectorize(fan_out, batch) for batch in batches)
        )
        fan_out.batches += len(batches)
        fan_out.vectorized += sum(written)
        if len(page) == fan_out.page_size:
            fan_out.after = page[-1]
            workflow.continue_as_new(args=[args, fan_out])
        return {
            "batches": fan_out.batches,
            "documents": fan_out.documents,
            "vectorized": fan_out.vectorized,
            "model": fan_out.model,
            "model_choice": fan_out.model_choice,
        }

    async def _vectorize(self, fan_out: FanOut, batch: list[str]) -> int:
        args = {"docs": batch, "project": fan_out.project}
        written = await _activity(
            VECTORIZE_DOCS, args, start_to_close=timedelta(hours=1)
        )
        fan_out.documents += len(batch)
        self._show_progress(fan_out)
        return written

    @staticmethod
    def _show_progress(fan_out: FanOut) -> None:
        # Counted at the start: documents indexed since may outnumber it.
        total = max(fan_out.total, fan_out.documents)
        workflow.upsert_search_attributes(
            [
                _PROGRESS.value_set(float(fan_out.documents)),
                _MAX_PROGRESS.value_set(float(total)),
            ]
        )


_WORKFLOW_CLASSES = {
    PING: Ping,
    CREATE_VECTORIZATION_TASKS: CreateVectorizationTasks,
    VECTORIZE_DOCS: VectorizeDocs,
    FIND_MOST_SIMILAR: FindMostSimilar,
}
# What a worker of each kind runs, on its group's task queue.
WORKFLOWS: dict[WorkerKind, list[type]] = {
    kind: [_WORKFLOW_CLASSES[name] for name in names]
    for kind, names in TEMPORAL_WORKFLOWS.items()
}
