"""The icij-worker app: the tasks registered on their groups, nothing else.

Every task of ``tasks.TASKS`` is registered as it is; the vectorization is run by
``ml_worker.icij.fanout``. Outages (``exceptions.OUTAGES``) are retried
``MAX_RETRIES`` times, as Temporal retries them (``ml_worker.temporal``); any other
error fails the task at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from icij_worker import AsyncApp
from icij_worker.app import TaskGroup

from ml_worker import tasks
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, MAX_RETRIES, task_group
from ml_worker.exceptions import OUTAGES
from ml_worker.icij.dependencies import DEPENDENCIES
from ml_worker.icij.fanout import vectorize_project
from ml_worker.invoke import Progress, invoke, takes_progress

app = AsyncApp(name="ml_worker", dependencies=DEPENDENCIES)


def _handler(progress: Any, args: dict[str, Any]) -> Progress | None:
    """icij-worker binds ``progress`` to its handler; a client's own ``progress``
    argument is not callable, and goes back to the arguments (which refuse it)."""
    if progress is None or callable(progress):
        return progress
    args["progress"] = progress
    return None


def _icij_task(
    fn: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """``fn`` as icij-worker calls it: with the task's arguments, and a progress
    handler when ``fn`` reports progress (icij-worker looks for the parameter)."""
    if not takes_progress(fn):

        async def task(**args: Any) -> Any:
            return await invoke(fn, args)

    else:

        async def task(progress: Any = None, **args: Any) -> Any:  # type: ignore[misc]
            return await invoke(fn, args, progress=_handler(progress, args))

    task.__name__ = task.__qualname__ = fn.__name__
    return task


async def create_vectorization_tasks(progress: Any = None, **args: Any) -> Any:
    return await vectorize_project(args, progress=_handler(progress, args))


def _register(name: str, task: Callable[..., Awaitable[Any]]) -> None:
    app.task(
        name=name,
        group=TaskGroup(name=task_group(name)),
        recover_from=OUTAGES,
        max_retries=MAX_RETRIES,
    )(task)


for _name, _fn in tasks.TASKS.items():
    _register(_name, _icij_task(_fn))
_register(CREATE_VECTORIZATION_TASKS, create_vectorization_tasks)
