"""The tasks as Temporal activities: each takes Datashare's ``args`` object and calls
the task with the worker process's dependencies.

Activities are delivered at least once, like icij-worker's tasks: a batch written
twice replaces its own rows (``store.replace_documents``). They heartbeat while they
run, so that a worker killed mid-batch has its activity retried within
``workflows.HEARTBEAT_TIMEOUT`` rather than at its start-to-close timeout; Temporal
cancels an activity through its heartbeats too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ml_worker import dependencies as deps
from ml_worker import documents, tasks
from ml_worker.arguments import validated
from ml_worker.constants import (
    DOCUMENT_ID_PAGE,
    FIND_MOST_SIMILAR,
    PING,
    PREPARE_VECTORIZATION,
    VECTORIZE_DOCS,
    WorkerKind,
)
from ml_worker.exceptions import InvalidInput, NotFound

# Errors retrying cannot mend: bad arguments (InvalidArguments, and a ValueError or
# TypeError raised on a value no check foresaw), a project or table that is not
# there. The workflow fails at once, naming the problem.
_NOT_RETRYABLE = (InvalidInput, NotFound, ValueError, TypeError)
HEARTBEAT_EVERY_S = 2.0


async def _call(fn: Callable[..., Awaitable[Any]], args: dict) -> Any:
    # Jackson's type entries ("@type") may come with Datashare's arguments.
    kwargs = {k: v for k, v in args.items() if not k.startswith("@")}
    beats = asyncio.create_task(_heartbeat())
    try:
        return await fn(**kwargs)
    except _NOT_RETRYABLE as e:
        # The class name as the failure's type: the CLI tells its kind by it.
        raise ApplicationError(str(e), type=type(e).__name__, non_retryable=True) from e
    finally:
        beats.cancel()


async def _heartbeat() -> None:
    # Blocking work runs in threads (tasks.py): this loop keeps beating meanwhile.
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_S)


@activity.defn(name=PING)
async def ping(args: dict) -> str:
    return await _call(tasks.ping, args)


@activity.defn(name=FIND_MOST_SIMILAR)
async def find_most_similar(args: dict) -> list[list[dict]]:
    return await _call(tasks.find_most_similar, args)


@activity.defn(name=VECTORIZE_DOCS)
async def vectorize_docs(args: dict) -> int:
    return await _call(tasks.vectorize_docs, args)


@activity.defn(name=PREPARE_VECTORIZATION)
async def prepare_vectorization(args: dict) -> dict:
    """``args``: those of create_vectorization_tasks; returns its plan as a dict."""

    async def prepare(**kwargs) -> dict:
        # Checked as create_vectorization_tasks' arguments, the task Datashare names.
        kwargs = validated(tasks.create_vectorization_tasks, kwargs)
        kwargs.pop("user", None)
        plan = await tasks.prepare_vectorization(
            **kwargs,
            config=deps.lifespan_config(),
            es_client=deps.lifespan_es_client(),
            vector_db=deps.lifespan_vector_db(),
        )
        return dataclasses.asdict(plan)

    return await _call(prepare, args)


@activity.defn(name=DOCUMENT_ID_PAGE)
async def document_id_page(project: str, after: str | None, page_size: int) -> list:
    return await documents.document_id_page(
        deps.lifespan_es_client(),
        project,
        page_size=page_size,
        after=after,
        retry_s=deps.lifespan_config().es_retry_s,
    )


# What a worker of each kind runs, on its group's task queue.
ACTIVITIES: dict[WorkerKind, list[Callable]] = {
    WorkerKind.VECTORIZE: [vectorize_docs],
    WorkerKind.SEARCH: [ping, find_most_similar],
    WorkerKind.FANOUT: [prepare_vectorization, document_id_page],
}
