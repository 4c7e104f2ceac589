"""The tasks as Temporal workflows, under the names Datashare starts them by.

A workflow only decides; its work runs as activities on the queue of the worker
kind that does it (``queues.activity_queue``), so it never waits behind a model.
Every worker polls every workflow on the queues it polls, so a task runs
whichever group or routing strategy it was submitted with:

- ``TaskWorkflow``, a dynamic workflow, runs any task of ``tasks.TASKS`` as the
  activity of the same name: adding a task takes no line here;
- ``Vectorization`` (``create_vectorization_tasks``) runs the fan-out every engine
  runs (``fanout.run_fan_out``), each batch a ``vectorize_docs`` activity. Each
  run of the workflow reads one page of ids, at most ``MAX_BATCHES_PER_RUN``
  batches, then continues as new from the page's last id: a run's history stays
  about 4 events a batch (a few hundred), whatever the project's size, far under
  Temporal's limits (50,000 events, 2,000 pending activities).

As Datashare 21 reads them (``TaskManagerTemporal``): a workflow takes one
argument, the task's ``args`` (a continued run too: Datashare reads a run's one
input back, and fails on two), and returns its result as JSON text: Datashare's
task repository keeps a string, where it drops a task whose result is an object or
a list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeKey
from temporalio.converter import value_to_type
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ml_worker.constants import (
        CREATE_VECTORIZATION_TASKS,
        MAX_PROGRESS_ATTRIBUTE,
        MAX_RETRIES,
        PROGRESS_ATTRIBUTE,
        TASK_KINDS,
        VECTORIZE_DOCS,
    )
    from ml_worker.fanout import BatchCounts, BatchFailed, FanOutState, run_fan_out
    from ml_worker.temporal.activities import DOCUMENT_ID_PAGE, PREPARE_VECTORIZATION
    from ml_worker.temporal.queues import activity_queue

MAX_BATCHES_PER_RUN = 200
# Where a continued vectorization finds its state, in its one argument.
RESUME_FROM = "resume_from"
# A killed worker's activity is retried once its heartbeats stop this long.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# What an activity may take at most, however it heartbeats: a batch of 64 long
# documents on a CPU takes minutes.
START_TO_CLOSE = timedelta(hours=1)
# Outages are retried with backoff as often as icij-worker retries them; the
# activities fail any other error at once (activities.py).
RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=MAX_RETRIES + 1,
)
# The fan-out's own activities run where its workflow's task runs.
_KINDS = {
    **TASK_KINDS,
    PREPARE_VECTORIZATION: TASK_KINDS[CREATE_VECTORIZATION_TASKS],
    DOCUMENT_ID_PAGE: TASK_KINDS[CREATE_VECTORIZATION_TASKS],
}
_PROGRESS = SearchAttributeKey.for_float(PROGRESS_ATTRIBUTE)
_MAX_PROGRESS = SearchAttributeKey.for_float(MAX_PROGRESS_ATTRIBUTE)


async def _activity(name: str, *args: Any, result_type: type | None = None) -> Any:
    """Runs the activity ``name`` on its kind's queue; its failure fails the
    caller with the activity's own error type and message."""
    try:
        return await workflow.execute_activity(
            name,
            args=args,
            task_queue=activity_queue(_KINDS[name]),
            start_to_close_timeout=START_TO_CLOSE,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=RETRIES,
            result_type=result_type,
        )
    except ActivityError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError):
            raise ApplicationError(
                cause.message, type=cause.type, non_retryable=True
            ) from None
        raise


@workflow.defn(dynamic=True)
class TaskWorkflow:
    """Any task but the vectorization: the activity named as the workflow's type,
    given the workflow's one argument, Datashare's ``args`` object."""

    @workflow.run
    async def run(self, args: Sequence[RawValue]) -> Any:
        name = workflow.info().workflow_type
        if name not in TASK_KINDS or name == CREATE_VECTORIZATION_TASKS:
            raise ApplicationError(
                f"unknown task {name}: one of {', '.join(sorted(TASK_KINDS))}",
                type="UnknownTask",
                non_retryable=True,
            )
        converter = workflow.payload_converter()
        task_args = converter.from_payload(args[0].payload, dict) if args else {}
        result = await _activity(name, task_args)
        # Done: Datashare reads a finished task's progress here when it comes
        # back up (TaskManagerTemporal.reconcileTasks), not only from its result.
        _show_progress(1, 1)
        return json.dumps(result)


@workflow.defn(name=CREATE_VECTORIZATION_TASKS)
class Vectorization:
    """Vectorizes a project: ``fanout.run_fan_out`` with batches as activities.

    Returns the run's ``fanout.VectorizationSummary``. Cancelled, it schedules no
    more batches and cancels those still running.
    """

    @workflow.run
    async def run(self, args: dict) -> str:
        state = self._resumed(args)
        if state is None:
            state = await _activity(
                PREPARE_VECTORIZATION, args, result_type=FanOutState
            )
            state.page_size = min(
                state.page_size, state.batch_size * MAX_BATCHES_PER_RUN
            )
            _show_progress(state.done, state.total)
        if not await run_fan_out(state, _ActivityBatches(state), max_pages=1):
            workflow.continue_as_new(args=[{**args, RESUME_FROM: state}])
        return json.dumps(state.summary.as_result())

    @staticmethod
    def _resumed(args: dict) -> FanOutState | None:
        """The state a previous run of this workflow continued from; a client's
        own ``resume_from`` is not taken (it would skip the checks of the first
        run's ``prepare_vectorization``)."""
        given = args.pop(RESUME_FROM, None)
        if given is None or workflow.info().continued_run_id is None:
            return None
        return value_to_type(FanOutState, given)


class _ActivityBatches:
    """Batches as ``vectorize_docs`` activities (a ``fanout.BatchRunner``)."""

    def __init__(self, state: FanOutState):
        self._state = state

    async def id_page(self, after: str | None, size: int) -> list[str]:
        return await _activity(DOCUMENT_ID_PAGE, self._state.project, after, size)

    async def run_batch(self, docs: list[str]) -> BatchCounts:
        # The run's user was checked granted the project before its first batch.
        args: dict[str, Any] = {"docs": docs, "project": self._state.project}
        try:
            return BatchCounts.of(await _activity(VECTORIZE_DOCS, args))
        except ApplicationError as e:
            raise BatchFailed(f"{e.type}: {e.message}") from e

    async def progress(self, done: int, total: int) -> None:
        _show_progress(done, total)


def _show_progress(done: int, total: int) -> None:
    """Where Datashare reads a task's progress: its workflow's search attributes."""
    workflow.upsert_search_attributes(
        [_PROGRESS.value_set(float(done)), _MAX_PROGRESS.value_set(float(total))]
    )


# Every worker runs both, on every queue it polls.
WORKFLOWS: list[type] = [TaskWorkflow, Vectorization]
