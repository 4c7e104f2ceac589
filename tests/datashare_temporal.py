"""Datashare 21's side of Temporal, for contract tests: how it starts a task's
workflow and how it reads the task back, written from its source (ICIJ/datashare,
tag 21.18.0, module datashare-tasks, ``org.icij.datashare.asynctasks``):

- ``TaskManagerTemporal.startTask`` and ``resolveWfTaskQueue``: the queue of a task
  is its group lower-cased (``--taskRoutingStrategy GROUP``), its name lower-cased
  (``NAME``), or ``default-java`` (``UNIQUE``); ``generateSearchAttributes``:
  ``Progress`` 0.0, ``MaxProgress`` 1.0 and, for a task with a user, ``UserId``;
- ``temporal.TemporalInterlocutor.createWorkflow``: an untyped workflow whose id is
  the task's and whose type is the task's name, one input (``TemporalInputPayload``,
  the args map itself, written by the Java SDK's Jackson converter as ``json/plain``),
  a 7-day workflow task timeout, the ids of ended workflows never reused;
- ``TemporalInterlocutor.parseTask``: the state from the execution's status
  (``TemporalHelper.asTaskState``), the progress ``Progress / MaxProgress`` from the
  described search attributes (``parseProgress``), the result read untyped from the
  workflow's result payload, the failure's cause as the task's error, and the args
  from the first event of the latest run (``getArgs``, which refuses more than one
  input payload).

Only as wide as ml-worker's tests use it; nothing here is ml-worker's code.
"""

from __future__ import annotations

import contextlib
import enum
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    RawValue,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import FailureError

# TemporalInterlocutor.DEFAULT_WORKFLOW_TASK_TIMEOUT (the server caps it).
WORKFLOW_TASK_TIMEOUT = timedelta(days=7)
# TaskManagerTemporal.WORKFLOWS_DEFAULT: every task's queue under UNIQUE routing.
UNIQUE_QUEUE = "default-java"
PROGRESS = SearchAttributeKey.for_float("Progress")
MAX_PROGRESS = SearchAttributeKey.for_float("MaxProgress")
USER_ID = SearchAttributeKey.for_keyword("UserId")


class Routing(enum.StrEnum):
    """``--taskRoutingStrategy``."""

    UNIQUE = "UNIQUE"
    GROUP = "GROUP"
    NAME = "NAME"


def task_queue(routing: Routing, task_name: str, group: str | None) -> str:
    """``TaskManagerTemporal.resolveWfTaskQueue``: Java's ``toLowerCase``."""
    if routing is Routing.GROUP:
        if group is None:
            raise ValueError("GROUP routing needs ?group= (Datashare fails without)")
        return group.lower()
    if routing is Routing.NAME:
        return task_name.lower()
    return UNIQUE_QUEUE


# TemporalHelper.asTaskState: Datashare's task states by execution status. A
# continued-as-new run is never described: the description is the latest run's.
STATES = {
    WorkflowExecutionStatus.RUNNING: "RUNNING",
    WorkflowExecutionStatus.COMPLETED: "DONE",
    WorkflowExecutionStatus.FAILED: "ERROR",
    WorkflowExecutionStatus.TIMED_OUT: "ERROR",
    WorkflowExecutionStatus.CANCELED: "CANCELLED",
    WorkflowExecutionStatus.TERMINATED: "CANCELLED",
}


def user(user_id: str, projects: list[str]) -> dict[str, Any]:
    """A ``org.icij.datashare.user.User`` as the Java SDK writes it in the args:
    its public fields, its grants in ``details.groups_by_applications.datashare``."""
    return {
        "id": user_id,
        "name": user_id.title(),
        "email": f"{user_id}@example.org",
        "provider": "oauth",
        "details": {
            "uid": user_id,
            "groups_by_applications": {"datashare": list(projects)},
        },
    }


@dataclass(frozen=True)
class DatashareTask:
    """A task as ``TemporalInterlocutor.parseTask`` reads it."""

    state: str
    progress: float
    # The value of the result payload, read as Jackson reads an untyped JSON value.
    result: Any = None
    result_encoding: bytes | None = None
    # The failure's cause (Datashare keeps its class, message, type and whether it
    # may be retried in TaskError(Throwable)).
    error: FailureError | None = None


class DatashareTemporal:
    """Datashare's ``TaskManagerTemporal`` on a Temporal namespace."""

    def __init__(self, client: Client, routing: Routing):
        self.client = client
        self.routing = routing

    async def start_task(
        self, task_id: str, name: str, args: dict[str, Any], *, group: str | None
    ) -> str:
        """Starts the task's workflow as ``startTask``; returns its queue."""
        queue = task_queue(self.routing, name, group)
        pairs: list[SearchAttributePair[Any]] = [
            SearchAttributePair(PROGRESS, 0.0),
            SearchAttributePair(MAX_PROGRESS, 1.0),
        ]
        user_id = (args.get("user") or {}).get("id")
        if user_id is not None:
            pairs.append(SearchAttributePair(USER_ID, user_id))
        # The bytes Jackson writes: compact JSON, as json/plain.
        payload = Payload(
            metadata={"encoding": b"json/plain"},
            data=json.dumps(args, separators=(",", ":")).encode(),
        )
        handle = await self.client.start_workflow(
            name,
            RawValue(payload),
            id=task_id,
            task_queue=queue,
            task_timeout=WORKFLOW_TASK_TIMEOUT,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=TypedSearchAttributes(pairs),
        )
        await handle.describe()
        return queue

    def _handle(self, task_id: str) -> WorkflowHandle[Any, RawValue]:
        return self.client.get_workflow_handle(task_id, result_type=RawValue)

    async def wait(self, task_id: str) -> None:
        """Until the task's workflow ends, following its runs, as the completion
        listener's ``getResultAsync`` does."""
        # Its end, failed or not: the task is read next.
        with contextlib.suppress(WorkflowFailureError):
            await self._handle(task_id).result()

    async def task(self, task_id: str) -> DatashareTask:
        """The task as ``parseTask`` reads it (after the completion listener saw
        its workflow end)."""
        handle = self._handle(task_id)
        description = await handle.describe()
        assert description.status is not None
        state = STATES[description.status]
        attributes = description.typed_search_attributes
        done, total = attributes.get(PROGRESS), attributes.get(MAX_PROGRESS)
        assert total is not None, "MaxProgress is gone: Datashare's parseProgress fails"
        progress = 0.0 if total == 0 or done is None else done / total
        if state not in ("DONE", "ERROR"):
            return DatashareTask(state, progress)
        try:
            raw = await handle.result(follow_runs=False)
        except WorkflowFailureError as e:
            assert isinstance(e.cause, FailureError), e.cause
            return DatashareTask(state, progress, error=e.cause)
        payload = raw.payload
        result = json.loads(payload.data)
        return DatashareTask(state, progress, result, payload.metadata.get("encoding"))

    async def start_payloads(self, task_id: str) -> list[Payload]:
        """The input payloads of the latest run's first event, which ``getArgs``
        reads the task's args from (and refuses unless there is exactly one)."""
        async for event in self.client.get_workflow_handle(
            task_id
        ).fetch_history_events(page_size=1):
            return list(
                event.workflow_execution_started_event_attributes.input.payloads
            )
        raise AssertionError(f"no history for {task_id}")
