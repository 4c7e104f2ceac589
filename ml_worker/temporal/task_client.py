"""The task API's interface over Temporal: a task is a workflow, started as
Datashare 21 starts it (``TaskManagerTemporal.startTask``): the workflow's id is the
task's, its type the task's name, its one argument the task's ``args``, its queue
the one GROUP routing resolves (``queues.group_queue``), with the search attributes
Datashare sets. With it, the command line creates, follows and cancels tasks as
Datashare does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from icij_worker import Task, TaskError, TaskState
from icij_worker.objects import ErrorEvent
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from ml_worker.config import MLWorkerConfig
from ml_worker.constants import (
    MAX_PROGRESS_ATTRIBUTE,
    PROGRESS_ATTRIBUTE,
    USER_ID_ATTRIBUTE,
)
from ml_worker.exceptions import TaskServiceUnavailable, UnknownTask
from ml_worker.task_client import TaskClient, new_task_id
from ml_worker.temporal.connection import connect
from ml_worker.temporal.queues import group_queue
from ml_worker.temporal.workflows import RESUME_FROM

_STATES = {
    WorkflowExecutionStatus.RUNNING: TaskState.RUNNING,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: TaskState.RUNNING,
    WorkflowExecutionStatus.COMPLETED: TaskState.DONE,
    WorkflowExecutionStatus.FAILED: TaskState.ERROR,
    # As Datashare tells them: it stops a task by terminating its workflow.
    WorkflowExecutionStatus.TERMINATED: TaskState.CANCELLED,
    WorkflowExecutionStatus.TIMED_OUT: TaskState.ERROR,
    WorkflowExecutionStatus.CANCELED: TaskState.CANCELLED,
}


class TemporalTaskClient(TaskClient):
    """Tasks as the workflows of the configured Temporal server and namespace."""

    def __init__(self, config: MLWorkerConfig):
        self._config = config
        self._temporal: Client | None = None

    async def __aenter__(self) -> TemporalTaskClient:
        try:
            self._temporal = await connect(self._config)
        except RuntimeError as e:  # the SDK's connection failure
            msg = f"Temporal server unreachable at {self._config.temporal_address}: {e}"
            raise TaskServiceUnavailable(msg) from e
        return self

    async def __aexit__(self, *exc_info):
        self._temporal = None

    @property
    def _client(self) -> Client:
        if self._temporal is None:
            raise RuntimeError("TemporalTaskClient used outside `async with`")
        return self._temporal

    async def check(self) -> None:
        # Connecting reached the server; the namespace the tasks go to must exist.
        try:
            await self._client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self._client.namespace)
            )
        except RPCError as e:
            msg = f"Temporal namespace {self._client.namespace}: {e.message}"
            raise TaskServiceUnavailable(msg) from e

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        with _rpc_errors(task_id):
            await self._client.start_workflow(
                name,
                args,
                id=task_id,
                task_queue=group_queue(group),
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=start_attributes(args),
            )
        return task_id

    async def get_task(self, task_id: str) -> Task:
        handle = self._client.get_workflow_handle(task_id)
        with _rpc_errors(task_id):
            description = await handle.describe()
            args = await self._args(handle)
        return _task(description, args)

    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        if not done and (await self.get_task(task_id)).state is not TaskState.DONE:
            return None
        with _rpc_errors(task_id):
            # JSON text, as the workflows return it for Datashare (workflows.py).
            return json.loads(await self._client.get_workflow_handle(task_id).result())

    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]:
        task = await self.get_task(task_id)
        if task.state is not TaskState.ERROR:
            return []
        try:
            with _rpc_errors(task_id):
                await self._client.get_workflow_handle(task_id).result()
        except WorkflowFailureError as e:
            cause = e.cause
            error = TaskError(
                name=getattr(cause, "type", None) or type(cause).__name__,
                message=getattr(cause, "message", None) or str(cause),
            )
            at = task.completed_at or task.created_at
            return [ErrorEvent(task_id=task_id, error=error, created_at=at)]
        return []

    async def get_tasks(self, name: str | None = None) -> list[Task]:
        query = f"WorkflowType = '{name}'" if name else None
        with _rpc_errors("*"):
            return [
                _task(execution, {})
                async for execution in self._client.list_workflows(query)
            ]

    async def cancel_task(self, task_id: str) -> None:
        with _rpc_errors(task_id):
            await self._client.get_workflow_handle(task_id).cancel()

    async def _args(self, handle: WorkflowHandle) -> dict:
        # The workflow's first argument, in the first event of its latest run.
        async for event in handle.fetch_history_events(page_size=1):
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            if payloads:
                (args,) = await self._client.data_converter.decode(payloads[:1])
                if not isinstance(args, dict):
                    return {}
                # A continued vectorization's state is the workflow's, not an
                # argument of the task.
                return {k: v for k, v in args.items() if k != RESUME_FROM}
            break
        return {}


_PROGRESS = SearchAttributeKey.for_float(PROGRESS_ATTRIBUTE)
_MAX_PROGRESS = SearchAttributeKey.for_float(MAX_PROGRESS_ATTRIBUTE)
_USER_ID = SearchAttributeKey.for_keyword(USER_ID_ATTRIBUTE)


def start_attributes(args: dict[str, Any]) -> TypedSearchAttributes:
    """The search attributes Datashare starts a task's workflow with: no progress
    out of 1, and the task's user's id when it has one."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(_PROGRESS, 0.0),
        SearchAttributePair(_MAX_PROGRESS, 1.0),
    ]
    user = args.get("user")
    user_id = user.get("id") if isinstance(user, dict) else user
    if isinstance(user_id, str):
        pairs.append(SearchAttributePair(_USER_ID, user_id))
    return TypedSearchAttributes(pairs)


def _task(description: WorkflowExecution, args: dict) -> Task:
    state = TaskState.QUEUED
    if description.status is not None:
        state = _STATES[description.status]
    attributes = {a.key.name: a.value for a in description.typed_search_attributes}
    done = attributes.get(PROGRESS_ATTRIBUTE)
    total = attributes.get(MAX_PROGRESS_ATTRIBUTE)
    progress = 1.0 if state is TaskState.DONE else None
    if progress is None and isinstance(done, float) and isinstance(total, float):
        progress = done / total if total else 0.0
    return Task(
        id=description.id,
        name=description.workflow_type,
        args=args,
        state=state,
        progress=progress,
        created_at=description.start_time or datetime.now(UTC),
        completed_at=description.close_time,
    )


@contextmanager
def _rpc_errors(task_id: str) -> Iterator[None]:
    """Temporal's RPC errors as the task API's: unknown ids, unreachable server."""
    try:
        yield
    except RPCError as e:
        if e.status is RPCStatusCode.NOT_FOUND:
            raise UnknownTask(f"unknown task {task_id}: {e.message}") from e
        if e.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TaskServiceUnavailable(f"Temporal server: {e.message}") from e
        raise
