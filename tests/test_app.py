"""The tasks as the engines register them, and the one argument check they share."""

from __future__ import annotations

import pytest
from icij_worker.app import supports_progress

from ml_worker import tasks
from ml_worker.arguments import validated
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    TASK_KINDS,
    SearchMode,
    WorkerKind,
)
from ml_worker.exceptions import InvalidInput, ProjectNotGranted
from ml_worker.icij.app import app
from ml_worker.invoke import invoke, task_arguments
from ml_worker.temporal.activities import ACTIVITIES

pytestmark = pytest.mark.unit
# Where temporalio keeps an activity's name on its function.
_DEFINITION = "__temporal_activity_definition"


def test_every_task_is_registered_on_both_engines():
    activities = {
        getattr(a, _DEFINITION).name
        for kind_activities in ACTIVITIES.values()
        for a in kind_activities
    }

    assert set(app.registry) == {*tasks.TASKS, CREATE_VECTORIZATION_TASKS}
    assert set(tasks.TASKS) <= activities
    assert set(app.registry) == set(TASK_KINDS)


def test_searches_and_fan_outs_never_share_the_batches_queue():
    groups = {name: task.group.name for name, task in app.registry.items()}

    assert groups == {
        "ping": "PYTHON_SEARCH",
        "create_vectorization_tasks": "PYTHON_FANOUT",
        "vectorization_status": "PYTHON_SEARCH",
        "vectorize_docs": "PYTHON",
        "find_most_similar": "PYTHON_SEARCH",
        "find_similar_documents": "PYTHON_SEARCH",
    }


def test_a_task_kinds_activities_are_its_workers():
    by_kind = {
        kind: {getattr(a, _DEFINITION).name for a in activities}
        for kind, activities in ACTIVITIES.items()
    }

    assert "vectorize_docs" in by_kind[WorkerKind.VECTORIZE]
    assert "find_most_similar" in by_kind[WorkerKind.SEARCH]
    assert "prepare_vectorization" in by_kind[WorkerKind.FANOUT]


def test_progress_reaches_the_tasks_that_report_it():
    assert supports_progress(app.registry["create_vectorization_tasks"].task)
    assert supports_progress(app.registry["vectorize_docs"].task)
    assert not supports_progress(app.registry["ping"].task)


async def test_datashare_user_argument_is_accepted():
    ping = app.registry["ping"].task
    user = {"@type": "org.icij.datashare.session.DatashareUser", "id": "local"}

    assert await ping(user=user) == "pong"
    assert await ping(**{"@type": "java.util.HashMap", "user": "local"}) == "pong"


async def test_unknown_arguments_fail_clearly():
    ping = app.registry["ping"].task

    with pytest.raises(ValueError) as error:
        await ping(zeta=1, alpha=2)

    assert str(error.value) == (
        "unknown argument(s) for task ping: alpha, zeta; accepted: user"
    )


@pytest.mark.parametrize(
    "name,args",
    [
        ("find_most_similar", {"project": "p", "queries": ["q"], "vector_db": "db"}),
        ("vectorize_docs", {"project": "p", "docs": [], "es_client": "es"}),
        ("create_vectorization_tasks", {"project": "p", "config": {}}),
        ("create_vectorization_tasks", {"project": "p", "progress": 0.5}),
    ],
)
async def test_injected_dependencies_are_not_task_arguments(name, args):
    with pytest.raises(ValueError, match=r"unknown argument.*for task") as error:
        await app.registry[name].task(**args)

    accepted = str(error.value).split("accepted: ")[1].split(", ")
    assert "user" in accepted
    assert not {"config", "es_client", "task_client", "vector_db", "progress"} & set(
        accepted
    )


async def test_the_worker_progress_handler_reaches_the_task():
    seen = []

    async def task(n: int, *, progress=None):
        await progress(n / 10)
        return n

    async def handler(p: float):
        seen.append(p)

    assert await invoke(task, {"n": 3}, progress=handler) == 3
    assert seen == [0.3]


async def test_missing_and_wrong_arguments_are_named_together():
    task = app.registry["find_most_similar"].task

    with pytest.raises(InvalidInput) as error:
        await task(project="p", n_similar="10")

    assert str(error.value) == (
        "missing argument queries for task find_most_similar; invalid argument"
        " n_similar for task find_most_similar: Input should be a valid integer,"
        " got '10'"
    )


def test_arguments_are_converted_as_the_task_declares_them():
    args = {"project": "p", "queries": ["q"], "mode": "text", "tags": "urgent"}

    assert validated(tasks.find_most_similar, args) == {
        **args,
        "mode": SearchMode.TEXT,
    }


@pytest.mark.parametrize(
    "user",
    [
        {"id": "jdoe", "details": {"groups_by_applications": {"datashare": ["other"]}}},
        {"id": "jdoe", "details": {}},
        "jdoe",
    ],
)
def test_a_user_not_granted_the_project_is_refused_before_the_task_runs(user):
    args = {"project": "leak", "queries": ["q"], "user": user}

    with pytest.raises(
        ProjectNotGranted, match='user "jdoe" is not granted project "leak"'
    ):
        task_arguments(tasks.find_most_similar, args)


def test_a_granted_user_and_no_user_pass():
    granted = {
        "id": "jdoe",
        "details": {"groups_by_applications": {"datashare": ["leak", "other"]}},
    }

    for user in (granted, None):
        args = {"project": "leak", "queries": ["q"], "user": user}
        assert task_arguments(tasks.find_most_similar, args)["project"] == "leak"
