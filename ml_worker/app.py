"""The icij-worker app: registers the tasks, nothing else."""

import functools

from icij_worker import AsyncApp
from icij_worker.app import TaskGroup

from ml_worker import tasks
from ml_worker.arguments import validated
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


def registered(fn):
    """``fn`` as a worker runs it: with the task's arguments only, checked (see
    ``ml_worker.arguments``); a dependency's name among them is refused.

    ``functools.wraps`` keeps ``fn``'s signature visible, so icij-worker still sees
    its ``progress`` parameter and binds it to a callable.
    """

    @functools.wraps(fn)
    async def task(**kwargs):
        # A progress handler is callable; a task argument (JSON) never is.
        progress = kwargs.pop("progress") if callable(kwargs.get("progress")) else None
        # Jackson's type entries ("@type") may come with Datashare's arguments.
        args = validated(fn, {k: v for k, v in kwargs.items() if not k.startswith("@")})
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
