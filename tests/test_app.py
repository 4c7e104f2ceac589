"""The registered tasks: the arguments they accept, as icij-worker sees them."""

from __future__ import annotations

import functools

import pytest
from icij_worker.app import supports_progress

from ml_worker import tasks
from ml_worker.app import app, registered
from ml_worker.arguments import validated
from ml_worker.constants import SearchMode
from ml_worker.exceptions import InvalidInput

TASKS = ["ping", "create_vectorization_tasks", "vectorize_docs", "find_most_similar"]


def test_every_task_is_registered():
    assert sorted(app.registry) == sorted(TASKS)


def test_searches_and_fan_outs_never_share_the_batches_queue():
    groups = {name: app.registry[name].group.name for name in TASKS}

    assert groups == {
        "ping": "PYTHON_SEARCH",
        "create_vectorization_tasks": "PYTHON_FANOUT",
        "vectorize_docs": "PYTHON",
        "find_most_similar": "PYTHON_SEARCH",
    }


def test_progress_support_survives_registration():
    assert supports_progress(app.registry["create_vectorization_tasks"].task)
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
    with pytest.raises(ValueError, match=f"unknown argument.*for task {name}") as error:
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

    # As icij-worker binds it when the task supports progress.
    bound = functools.partial(registered(task), progress=handler)

    assert await bound(n=3) == 3
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
