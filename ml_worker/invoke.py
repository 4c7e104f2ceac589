"""How every engine calls a task: the one place its arguments are checked.

An engine hands ``invoke`` a task function and the arguments a client submitted
(Datashare's, typed by Jackson on RabbitMQ, or anyone's); ``invoke`` reads them
without their Java types (``ml_worker.jackson``), checks them against the
function's signature (``ml_worker.arguments``), refuses a user who is not granted
the task's project (``ml_worker.grants``), and calls the task with the worker
process's dependencies (``ml_worker.dependencies``) that it takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ml_worker import dependencies
from ml_worker.arguments import validated
from ml_worker.constants import DEFAULT_PROJECT
from ml_worker.exceptions import InvalidArguments
from ml_worker.grants import check_grant
from ml_worker.jackson import untyped

R = TypeVar("R")
Progress = Callable[[float], Awaitable[None]]
# icij-worker hands a task its arguments' names in snake case.
_DEFAULT_PROJECT_NAMES = (DEFAULT_PROJECT, "default_project")


def task_arguments(
    fn: Callable[..., Awaitable[Any]], args: dict[str, Any], *, task: str | None = None
) -> dict[str, Any]:
    """``args`` checked as ``fn``'s task arguments (InvalidArguments naming every
    problem, and ``task`` where it is not ``fn``'s name), the user's grant on the
    project checked (ProjectNotGranted)."""
    # Datashare's task messages on RabbitMQ carry Jackson's types at every depth:
    # its user's grants are then a typed list.
    args = untyped(args)
    default_projects = [args.pop(n) for n in _DEFAULT_PROJECT_NAMES if n in args]
    checked = validated(fn, args, task=task)
    project = checked.get("project")
    for default_project in default_projects:
        if project is not None and default_project != project:
            msg = (
                f"invalid argument {DEFAULT_PROJECT}: {default_project!r} is not"
                f" the task's project {project!r}"
            )
            raise InvalidArguments(msg)
    if project is not None:
        check_grant(checked.get("user"), project)
    return checked


async def invoke(
    fn: Callable[..., Awaitable[R]],
    args: dict[str, Any],
    *,
    task: str | None = None,
    progress: Progress | None = None,
) -> R:
    """``fn`` run on a client's ``args``, with the dependencies it takes; errors
    name ``task`` where it is not ``fn``'s name."""
    checked = task_arguments(fn, args, task=task)
    takes = inspect.signature(fn).parameters
    injected = {
        name: provide()
        for name, provide in dependencies.PROVIDERS.items()
        if name in takes
    }
    if progress is not None and "progress" in takes:
        injected["progress"] = progress
    return await fn(**checked, **injected)


def takes_progress(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` reports its progress (a ``progress`` parameter)."""
    return "progress" in inspect.signature(fn).parameters
