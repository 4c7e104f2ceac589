"""The icij-worker app: registers the tasks, nothing else."""

import functools
import inspect

from icij_worker import AsyncApp
from icij_worker.app import TaskGroup

from ml_worker import tasks
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    FIND_MOST_SIMILAR,
    PING,
    VECTORIZE_DOCS,
    task_group,
)
from ml_worker.dependencies import DEPENDENCIES
from ml_worker.exceptions import (
    ElasticsearchUnavailable,
    TableBusy,
    TaskServiceUnavailable,
)

# Handed to the tasks by the worker process, never taken from a task's arguments.
INJECTED = frozenset({"config", "es_client", "task_client", "vector_db", "progress"})


def registered(fn):
    """``fn``, failing clearly on arguments it does not take.

    icij-worker calls ``fn(**args)``: an unknown argument would be a bare TypeError.
    ``functools.wraps`` keeps ``fn``'s signature visible, so icij-worker still sees
    its ``progress`` parameter and binds it to a callable.
    """
    accepted = [p for p in inspect.signature(fn).parameters if p not in INJECTED]

    @functools.wraps(fn)
    async def task(**kwargs):
        # A progress handler is callable; a task argument (JSON) never is.
        progress = kwargs.pop("progress") if callable(kwargs.get("progress")) else None
        # Jackson's type entries ("@type") may come with Datashare's arguments.
        args = {k: v for k, v in kwargs.items() if not k.startswith("@")}
        unknown = sorted(args.keys() - set(accepted))
        if unknown:
            msg = (
                f"unknown argument(s) for task {fn.__name__}: {', '.join(unknown)};"
                f" accepted: {', '.join(accepted)}"
            )
            raise ValueError(msg)
        if progress is not None:
            args["progress"] = progress
        return await fn(**args)

    return task


app = AsyncApp(name="ml_worker", dependencies=DEPENDENCIES)


def group_of(task_name: str) -> TaskGroup:
    return TaskGroup(name=task_group(task_name))


# Outages outlast the clients' own retries, and a table's commits may keep losing to
# other writers': the worker then retries the whole task.
OUTAGES = (ElasticsearchUnavailable, TaskServiceUnavailable, TableBusy)

app.task(name=PING, group=group_of(PING))(registered(tasks.ping))
app.task(
    name=CREATE_VECTORIZATION_TASKS,
    group=group_of(CREATE_VECTORIZATION_TASKS),
    recover_from=OUTAGES,
    max_retries=3,
)(registered(tasks.create_vectorization_tasks))
app.task(
    name=VECTORIZE_DOCS,
    group=group_of(VECTORIZE_DOCS),
    recover_from=OUTAGES,
    max_retries=3,
)(registered(tasks.vectorize_docs))
app.task(name=FIND_MOST_SIMILAR, group=group_of(FIND_MOST_SIMILAR))(
    registered(tasks.find_most_similar)
)
