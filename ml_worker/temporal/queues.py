"""Temporal task queues: where Datashare starts a task's workflow, and which queues
each kind of worker polls.

Datashare 21 (``TaskManagerTemporal.resolveWfTaskQueue``) starts a task's workflow
on the task queue named by its group, lower-cased, with ``--taskRoutingStrategy
GROUP``; by its task name, lower-cased, with ``NAME``; and on ``default-java``,
which no Python worker polls, with ``UNIQUE`` (its default). Temporal's queue names
are case-sensitive, so a worker polls the lower-cased names of both: its kind's
group and the names of its kind's tasks. The activities a workflow schedules run on
their kind's group queue, whichever queue the workflow came from. Datashare's Python
group, ``PYTHON``, is the vectorizing workers' (``constants.WorkerKind``): a
deployment that routes every Python task there keeps working.
"""

from __future__ import annotations

from ml_worker.constants import TASK_KINDS, WorkerKind


def group_queue(group: str) -> str:
    """The queue Datashare starts a task of ``group`` on (GROUP routing)."""
    return group.lower()


def name_queue(task_name: str) -> str:
    """The queue Datashare starts a task named ``task_name`` on (NAME routing)."""
    return task_name.lower()


def activity_queue(kind: WorkerKind) -> str:
    """The queue of the activities that workers of ``kind`` run."""
    return group_queue(kind.group)


def polled_queues(kind: WorkerKind) -> tuple[str, ...]:
    """The queues a worker of ``kind`` polls: its group's (GROUP routing), then
    each of its tasks' names (NAME routing). It takes every task's workflow on
    each: a workflow only decides, and its activities run on their kinds' queues.
    """
    names = (name_queue(name) for name, k in TASK_KINDS.items() if k is kind)
    return (group_queue(kind.group), *names)
