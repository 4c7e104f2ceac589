"""The tasks as Temporal activities: each takes the task's ``args`` object and runs
the task through ``ml_worker.invoke``, as every engine does.

Activities are delivered at least once, like icij-worker's tasks: a batch written
twice replaces its own rows (``store.replace_documents``). They heartbeat while they
run, so that a worker killed mid-batch has its activity retried within
``workflows.HEARTBEAT_TIMEOUT`` rather than at its start-to-close timeout; Temporal
cancels an activity through its heartbeats too.

Errors: an outage (``exceptions.OUTAGES``) is retried by the workflow's retry
policy, as icij-worker retries it; any other error fails the activity at once,
its class name as the failure's type (the command line tells its kind by it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ml_worker import documents, tasks
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    TASK_KINDS,
    WorkerKind,
)
from ml_worker.dependencies import lifespan_config, lifespan_es_client
from ml_worker.exceptions import OUTAGES
from ml_worker.fanout import FanOutState
from ml_worker.invoke import invoke

HEARTBEAT_EVERY_S = 2.0
# The fan-out's own activities, beside the tasks'.
PREPARE_VECTORIZATION = "prepare_vectorization"
DOCUMENT_ID_PAGE = "document_id_page"


async def _call(run: Callable[[], Awaitable[Any]]) -> Any:
    beats = asyncio.create_task(_heartbeat())
    try:
        return await run()
    except Exception as e:  # every failure is told, by its class
        raise ApplicationError(
            str(e), type=type(e).__name__, non_retryable=not isinstance(e, OUTAGES)
        ) from e
    finally:
        beats.cancel()


async def _heartbeat() -> None:
    # Blocking work runs in threads (tasks.py): this loop keeps beating meanwhile.
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)


def _task_activity(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable:
    async def run(args: dict[str, Any]) -> Any:
        return await _call(lambda: invoke(fn, args))

    run.__name__ = run.__qualname__ = fn.__name__
    return activity.defn(name=name)(run)


@activity.defn(name=PREPARE_VECTORIZATION)
async def prepare_vectorization(args: dict[str, Any]) -> FanOutState:
    """``args``: create_vectorization_tasks'; the fan-out's starting point."""
    return await _call(
        lambda: invoke(
            tasks.prepare_vectorization, args, task=CREATE_VECTORIZATION_TASKS
        )
    )


@activity.defn(name=DOCUMENT_ID_PAGE)
async def document_id_page(project: str, after: str | None, page_size: int) -> list:
    return await _call(
        lambda: documents.document_id_page(
            lifespan_es_client(),
            project,
            page_size=page_size,
            after=after,
            retry_s=lifespan_config().es_retry_s,
        )
    )


_TASK_ACTIVITIES = {name: _task_activity(name, fn) for name, fn in tasks.TASKS.items()}
# What a worker of each kind runs, on its kind's activity queue.
ACTIVITIES: dict[WorkerKind, list[Callable]] = {
    kind: [a for name, a in _TASK_ACTIVITIES.items() if TASK_KINDS[name] is kind]
    for kind in WorkerKind
}
ACTIVITIES[TASK_KINDS[CREATE_VECTORIZATION_TASKS]] += [
    prepare_vectorization,
    document_id_page,
]
