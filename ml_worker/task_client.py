"""The task API's interface: create, follow and cancel tasks, whatever serves them.

One interface, one module per implementation, chosen by the engine
(``ml_worker.engine``): icij-worker's HTTP task service
(``ml_worker.icij.task_client``), Datashare's task API (``ml_worker.datashare_api``)
and a Temporal server (``ml_worker.temporal.task_client``). Tasks are read as
icij-worker's task objects, the shape Datashare's API shares. ``wait_for_task`` is
the project's one loop that follows a task to its end: the command line, the
icij fan-out, the tests and the benchmarks all wait with it.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Self

# icij-worker's task objects are imported where a task is read: its import took
# 0.9 s, and `ml-worker status` only asks whether the service answers.
if TYPE_CHECKING:
    from icij_worker import Task
    from icij_worker.objects import ErrorEvent

# Polls come soon after a submission, then further apart: a search is answered in
# about 100 ms here, while a fixed 0.5 s between polls made it wait 0.5 s at least;
# a long run still costs the service at most 2 requests a second.
FIRST_POLL_S = 0.01
POLL_S = 0.5


def new_task_id(name: str) -> str:
    return f"{name}-{uuid.uuid4()}"


class TaskClient(ABC):
    """A task API, used as an async context manager."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    @abstractmethod
    async def check(self) -> None:
        """Raises a TaskServiceError (unreachable, credentials refused, failing)
        unless the task API answers. Reads no task: cheap however many there are."""

    @abstractmethod
    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        """Create (and queue) a task; returns its id. Creating it twice is a no-op."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task: ...

    @abstractmethod
    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        """The task's result, None while it has none. ``done``: the caller saw the
        task done, so its state need not be asked again."""

    @abstractmethod
    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]: ...

    @abstractmethod
    async def get_tasks(self, name: str | None = None) -> list[Task]: ...

    @abstractmethod
    async def cancel_task(self, task_id: str) -> None: ...


def poll_waits() -> Iterator[float]:
    """The waits between the polls of a task: FIRST_POLL_S, doubled up to POLL_S."""
    wait = FIRST_POLL_S
    while True:
        yield wait
        wait = min(wait * 2, POLL_S)


async def wait_for_task(
    client: TaskClient,
    task_id: str,
    *,
    on_poll: Callable[[Task], Awaitable[None]] | None = None,
) -> Task:
    """The task once it is done, failed or cancelled; ``on_poll`` sees every state
    read on the way (the command line shows it, and tells why a task waits)."""
    from icij_worker.objects import READY_STATES

    waits = poll_waits()
    while True:
        task = await client.get_task(task_id)
        if on_poll is not None:
            await on_poll(task)
        if task.state in READY_STATES:
            return task
        await asyncio.sleep(next(waits))
