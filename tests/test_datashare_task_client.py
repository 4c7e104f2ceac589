"""DatashareTaskClient against a contract double of Datashare's task API."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from icij_worker import TaskState

from ml_worker.config import MLWorkerConfig, TaskServiceKind
from ml_worker.datashare_api import (
    DatashareTaskClient,
    task_from_datashare,
    user_from_session,
)
from ml_worker.engines import engine_for
from ml_worker.exceptions import (
    TaskServiceAuthError,
    TaskServiceUnavailable,
    UnknownTask,
)
from tests.datashare_double import DatashareDouble

ARGS = {"docs": ["doc-1", "doc-2"], "project": "demo"}
# The signed-in user of the `datashare` fixture, as a task's args carry it.
LOCAL_USER: dict[str, Any] = {
    "@type": "org.icij.datashare.user.User",
    "id": "local",
    "name": "local",
    "email": None,
    "provider": "local",
    "details": {
        "uid": "local",
        "name": "local",
        "email": None,
        "provider": "local",
        "groups_by_applications": {"datashare": []},
    },
}


async def test_create_task_puts_the_task_in_its_group(datashare_client, datashare):
    before_ms = int(time.time() * 1000)

    task_id = await datashare_client.create_task(
        "vectorize_docs", ARGS, group="PYTHON", task_id="vec-1"
    )

    assert task_id == "vec-1"
    put = datashare.requests[-1]
    assert (put.method, put.path, put.query) == (
        "PUT",
        "/api/task/vec-1",
        {"group": "PYTHON"},
    )
    # As Datashare's route reads it: typed args, the signed-in user as the task's
    # owner, its project for the right to stop it, a state and a creation date.
    created_ms = put.body.pop("createdAt")
    assert before_ms <= created_ms <= int(time.time() * 1000)
    assert put.body == {
        "@type": "Task",
        "id": "vec-1",
        "name": "vectorize_docs",
        "state": "CREATED",
        "args": {
            "docs": ["java.util.ArrayList", ["doc-1", "doc-2"]],
            "project": "demo",
            "defaultProject": "demo",
            "user": LOCAL_USER,
        },
    }
    assert datashare.tasks["vec-1"]["createdAt"] == created_ms


async def test_a_task_given_a_user_is_that_users(datashare_client, datashare):
    user = {"id": "jdoe", "details": {"groups_by_applications": {"datashare": []}}}

    await datashare_client.create_task(
        "ping", {"user": user}, group="PYTHON", task_id="p"
    )

    assert datashare.requests[-1].body["args"]["user"] == {
        "@type": "org.icij.datashare.user.User",
        **user,
    }
    # Datashare shows a task to its user only.
    with pytest.raises(TaskServiceAuthError, match="403 Forbidden"):
        await datashare_client.get_task("p")
    assert await datashare_client.get_tasks() == []


def test_the_signed_in_users_grants_are_those_datashare_counts():
    # Local mode: the details grant the local project, the session every one.
    me = {
        "uid": "local",
        "groups_by_applications": {"datashare": ["local-datashare"]},
        "projects": [{"name": "local-datashare"}, {"name": "leaks"}],
    }

    user = user_from_session(me)

    assert user["id"] == "local"
    assert user["details"]["groups_by_applications"]["datashare"] == [
        "local-datashare",
        "leaks",
    ]
    assert "projects" not in user["details"]


@pytest.mark.parametrize(
    ("args", "status"),
    [
        ({"docs": ["doc-1"]}, 400),  # a list without its Java type
        ({"opts": {"k": 1}}, 400),  # an object without its Java type
        ({"user": {"id": "local"}}, 400),  # a user that is not a User
        (None, 500),  # no state or creation date: the task repository fails
    ],
)
def test_the_double_refuses_what_datashare_refuses(datashare, args, status):
    body = {
        "@type": "Task",
        "id": "t",
        "name": "ping",
        "state": "CREATED",
        "createdAt": 1,
        "args": args or {},
    }
    if args is None:
        del body["state"], body["createdAt"]

    answer = httpx.put(f"{datashare.url}/api/task/t", json=body)

    assert answer.status_code == status, answer.text
    assert "t" not in datashare.tasks


async def test_create_task_makes_an_id_when_none_is_given(datashare_client, datashare):
    task_id = await datashare_client.create_task("ping", {}, group="PYTHON")

    assert task_id.startswith("ping-")
    assert task_id in datashare.tasks


async def test_creating_an_existing_task_again_is_a_no_op(datashare_client, datashare):
    await datashare_client.create_task("ping", {}, group="PYTHON", task_id="ping-1")
    again = await datashare_client.create_task(
        "ping", {}, group="PYTHON", task_id="ping-1"
    )

    assert again == "ping-1"
    assert len(datashare.tasks) == 1


async def test_get_task_maps_datashare_task_json(datashare_client):
    await datashare_client.create_task(
        "vectorize_docs", ARGS, group="PYTHON", task_id="vec-1"
    )

    task = await datashare_client.get_task("vec-1")

    assert (task.id, task.name, task.state) == (
        "vec-1",
        "vectorize_docs",
        TaskState.QUEUED,
    )
    assert task.progress == 0.0
    assert task.retries_left == 0
    assert task.created_at.tzinfo is not None
    # Read without their Java types.
    assert task.args["docs"] == ARGS["docs"]
    assert task.args["user"]["id"] == "local"
    assert "@type" not in task.args["user"]


def test_task_from_datashare_reads_iso_dates():
    data = {
        "id": "t",
        "name": "ping",
        "state": "DONE",
        "progress": 1.0,
        "createdAt": "2024-05-01T10:00:00Z",
        "completedAt": "2024-05-01T10:00:01.500+00:00",
        "args": {},
    }

    task = task_from_datashare(data)

    assert task.created_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert task.completed_at == datetime(2024, 5, 1, 10, 0, 1, 500000, UTC)


async def test_result_is_none_until_there_is_one(datashare_client, datashare):
    await datashare_client.create_task(
        "vectorize_docs", ARGS, group="PYTHON", task_id="vec-1"
    )

    assert await datashare_client.get_task_result("vec-1") is None

    datashare.complete("vec-1", 2)
    assert await datashare_client.get_task_result("vec-1") == 2
    assert (await datashare_client.get_task("vec-1")).state is TaskState.DONE


async def test_results_of_every_shape(datashare_client, datashare):
    values = {
        "ping": "pong",
        "create_vectorization_tasks": ["a", "b"],
        "n": None,
        # ml-worker's workflows on Temporal: JSON text, kept as a string.
        "find_most_similar": '[[{"doc_id": "d", "score": 0.5}]]',
        "vectorization_status": '"pong"',
    }
    for name, value in values.items():
        await datashare_client.create_task(name, {}, group="PYTHON", task_id=name)
        if value is not None:
            datashare.complete(name, value)

    assert await datashare_client.get_task_result("ping") == "pong"
    assert await datashare_client.get_task_result("create_vectorization_tasks") == [
        "a",
        "b",
    ]
    assert await datashare_client.get_task_result("n") is None
    assert await datashare_client.get_task_result("find_most_similar") == [
        [{"doc_id": "d", "score": 0.5}]
    ]
    assert await datashare_client.get_task_result("vectorization_status") == "pong"


async def test_errors_of_a_failed_task(datashare_client, datashare):
    await datashare_client.create_task("ping", {}, group="PYTHON", task_id="ping-1")
    assert await datashare_client.get_task_errors("ping-1") == []

    datashare.fail("ping-1", "ValueError", "unknown argument(s) for task ping: x")

    [event] = await datashare_client.get_task_errors("ping-1")
    assert event.task_id == "ping-1"
    assert event.error.name == "ValueError"
    assert event.error.message == "unknown argument(s) for task ping: x"
    assert event.error.stacktrace[0].file == "tasks.py"
    assert (await datashare_client.get_task("ping-1")).state is TaskState.ERROR


async def test_list_tasks_reads_every_page(datashare_client, datashare, monkeypatch):
    monkeypatch.setattr(DatashareTaskClient, "PAGE_SIZE", 2)
    for i in range(5):
        await datashare_client.create_task(
            "vectorize_docs", ARGS, group="PYTHON", task_id=f"v{i}"
        )
    await datashare_client.create_task("ping", {}, group="PYTHON", task_id="p")

    every = await datashare_client.get_tasks()
    vectorize = await datashare_client.get_tasks("vectorize_docs")

    assert [t.id for t in every] == ["v0", "v1", "v2", "v3", "v4", "p"]
    assert [t.id for t in vectorize] == ["v0", "v1", "v2", "v3", "v4"]
    pages = [r for r in datashare.requests if r.path == "/api/task"]
    assert [r.query["from"] for r in pages[:3]] == ["0", "2", "4"]


async def test_list_filters_names_exactly(datashare_client):
    await datashare_client.create_task(
        "vectorize_docs", ARGS, group="PYTHON", task_id="v"
    )
    await datashare_client.create_task(
        "create_vectorization_tasks", {}, group="PYTHON", task_id="c"
    )

    # Datashare's own filter matches "vectorize_docs" inside other names too.
    assert [t.id for t in await datashare_client.get_tasks("vectorize_docs")] == ["v"]


async def test_list_accepts_a_plain_list():
    with DatashareDouble(paginated=False) as datashare:
        async with DatashareTaskClient(datashare.url) as client:
            await client.create_task("ping", {}, group="PYTHON", task_id="p1")
            await client.create_task("ping", {}, group="PYTHON", task_id="p2")

            assert [t.id for t in await client.get_tasks()] == ["p1", "p2"]


async def test_cancel_stops_the_task():
    with DatashareDouble(granted=["demo"]) as datashare:
        async with DatashareTaskClient(datashare.url) as client:
            await client.create_task(
                "vectorize_docs", ARGS, group="PYTHON", task_id="v"
            )

            await client.cancel_task("v")

            stop = datashare.requests[-1]
            assert (stop.method, stop.path) == ("PUT", "/api/task/stop/v")
            assert (await client.get_task("v")).state is TaskState.CANCELLED


async def test_a_task_is_stopped_by_a_member_of_its_project(datashare_client):
    # Datashare authorizes stopping on the task's project: its user is not granted.
    await datashare_client.create_task("vectorize_docs", ARGS, group="PYTHON")
    (task,) = await datashare_client.get_tasks()

    with pytest.raises(TaskServiceAuthError, match="403 Forbidden"):
        await datashare_client.cancel_task(task.id)


async def test_api_key_is_sent_as_bearer():
    with DatashareDouble(api_key="s3cret-key") as datashare:
        async with DatashareTaskClient(datashare.url, api_key="s3cret-key") as client:
            await client.create_task("ping", {}, group="PYTHON", task_id="p")
            await client.get_task("p")

    for request in datashare.requests:
        assert request.headers["Authorization"] == "bearer s3cret-key"


async def test_session_cookie_is_sent_with_a_csrf_pair():
    with DatashareDouble(
        session_cookie="sess", cookie_name="_my_session", granted=["demo"]
    ) as datashare:
        async with DatashareTaskClient(
            datashare.url, session_cookie="sess", cookie_name="_my_session"
        ) as client:
            # The double, as Datashare, refuses a cookie-authenticated PUT without it.
            await client.create_task(
                "vectorize_docs", ARGS, group="PYTHON", task_id="v"
            )
            await client.cancel_task("v")

    for request in datashare.requests:
        assert request.cookies["_my_session"] == "sess"
        assert request.cookies["_ds_csrf_token"] == request.headers["X-DS-CSRF-TOKEN"]


async def test_basic_auth_is_sent():
    with DatashareDouble(basic_auth=("alice", "pw")) as datashare:
        auth = httpx.BasicAuth("alice", "pw")
        async with DatashareTaskClient(datashare.url, auth=auth) as client:
            await client.create_task("ping", {}, group="PYTHON", task_id="p")

    assert datashare.requests[-1].headers["Authorization"].startswith("Basic ")


def test_api_key_and_basic_auth_exclude_each_other():
    with pytest.raises(ValueError, match="either an API key or basic-auth"):
        DatashareTaskClient(
            "http://127.0.0.1:1", auth=httpx.BasicAuth("a", "b"), api_key="k"
        )


async def test_check_reads_one_task_at_most(datashare_client, datashare):
    for _ in range(3):
        await datashare_client.create_task("ping", {}, group="PYTHON")

    await datashare_client.check()

    get = datashare.requests[-1]
    assert (get.method, get.path, get.query) == ("GET", "/api/task", {"size": "1"})


async def test_check_tells_refused_credentials():
    with DatashareDouble(api_key="right-key") as datashare:
        async with DatashareTaskClient(datashare.url, api_key="wrong-key") as client:
            with pytest.raises(TaskServiceAuthError, match="rejected the credentials"):
                await client.check()


async def test_401_names_the_rejection_and_the_url_not_the_key():
    with DatashareDouble(api_key="right-key") as datashare:
        async with DatashareTaskClient(datashare.url, api_key="wrong-key") as client:
            with pytest.raises(TaskServiceAuthError) as error:
                await client.get_task("p")

    message = str(error.value)
    assert "rejected the credentials (401 Unauthorized)" in message
    assert f"GET {datashare.url}/api/task/p" in message
    assert "wrong-key" not in message


async def test_403_names_the_denial_and_the_url(datashare_client, datashare):
    await datashare_client.user()
    datashare.fail_next(403, '{"error":"CSRF token wrong or missing"}')

    with pytest.raises(TaskServiceAuthError) as error:
        await datashare_client.create_task("ping", {}, group="PYTHON", task_id="p")

    message = str(error.value)
    assert "denied access (403 Forbidden)" in message
    assert f"PUT {datashare.url}/api/task/p" in message
    assert "CSRF token wrong or missing" in message


async def test_404_names_the_unknown_task_url(datashare_client, datashare):
    for call in (
        datashare_client.get_task,
        datashare_client.get_task_result,
        datashare_client.cancel_task,
    ):
        with pytest.raises(UnknownTask) as error:
            await call("missing")
        assert "not found (404 Not Found)" in str(error.value)
        assert f"{datashare.url}/api/task/" in str(error.value)
        assert "missing" in str(error.value)


async def test_500_names_the_failure_and_the_url(datashare_client, datashare):
    datashare.fail_next(500, "java.lang.NullPointerException")

    with pytest.raises(TaskServiceUnavailable) as error:
        await datashare_client.get_tasks()

    message = str(error.value)
    assert "failed (500 Internal Server Error)" in message
    assert f"GET {datashare.url}/api/task" in message
    assert "NullPointerException" in message


async def test_a_dropped_connection_is_retried_for_a_read(datashare_client, datashare):
    datashare.drop_next()

    assert await datashare_client.get_tasks() == []
    assert [r.method for r in datashare.requests] == ["GET", "GET"]


async def test_a_dropped_create_is_not_sent_again(datashare_client, datashare):
    await datashare_client.user()
    datashare.drop_next()

    with pytest.raises(TaskServiceUnavailable, match="unreachable"):
        await datashare_client.create_task("ping", {}, group="PYTHON")
    assert [r.method for r in datashare.requests] == ["GET", "PUT"]


async def test_a_failing_create_callback_answers_500(datashare):
    def refuse(task, group):
        raise RuntimeError(f"no worker for group {group}")

    datashare.on_create = refuse
    async with DatashareTaskClient(datashare.url) as client:
        with pytest.raises(TaskServiceUnavailable, match="no worker for group PYTHON"):
            await client.create_task("ping", {}, group="PYTHON")


async def test_unreachable_server_names_the_url():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    async with DatashareTaskClient(url) as client:
        with pytest.raises(TaskServiceUnavailable) as error:
            await client.get_task("p")

    assert f"unreachable at {url}/api/task/p" in str(error.value)


async def test_config_picks_the_datashare_client_and_hides_secrets(
    monkeypatch, datashare
):
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE", "datashare")
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE_URL", datashare.url)
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE_API_KEY", "s3cret-key")
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE_COOKIE", "s3cret-cookie")
    config = MLWorkerConfig()

    async with engine_for(config).task_client() as client:
        await client.check()

    assert config.task_service is TaskServiceKind.DATASHARE
    assert isinstance(client, DatashareTaskClient)
    (request,) = datashare.requests
    assert request.headers["Authorization"] == "bearer s3cret-key"
    assert request.cookies["_ds_session_id"] == "s3cret-cookie"
    shown = f"{config} {config!r} {config.model_dump_json()}"
    assert "s3cret" not in shown
