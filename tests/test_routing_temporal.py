"""Contract tests: ml-worker's tasks started by Datashare 21 on Temporal, and read
back as Datashare reads them.

Datashare's side is ``tests/datashare_temporal.py`` (from its source, 21.18): each
task is an untyped workflow named after it, started with the args map as its one
``json/plain`` input (Datashare's ``user`` in it), the three search attributes, on
the queue its routing strategy resolves: ``?group=`` lower-cased (GROUP, the group
given in any case), the task's name lower-cased (NAME). The workers are real
processes of ``ml-worker workers start`` on Temporal (one vectorizing, one search,
the fan-out ones), against the session's Temporal server and Elasticsearch. UNIQUE
routing sends every task to ``default-java``, which no Python worker polls
(docs/deploy.md says which flag to set): nothing to test here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from ml_worker.config import MLWorkerConfig
from ml_worker.es_client import es_client
from ml_worker.temporal.connection import connect
from ml_worker_dev.local_stack import temporal_worker_pool, wait_for_temporal_workers
from tests.datashare_temporal import (
    USER_ID,
    DatashareTask,
    DatashareTemporal,
    Routing,
    user,
)
from tests.known_items import (
    BATCH_SIZE,
    N_DOCS,
    SEARCH,
    assert_known_items_first,
    seed_known_items,
)
from tests.tables import seed
from tests.test_cli import cli

pytestmark = pytest.mark.temporal

# Ids read a page at a time: the known-item project takes four runs of the
# vectorization workflow, each continued as new from the last.
PAGE_SIZE = 64
READY_TIMEOUT_S = 600
GRANTED = "alice"
NOT_GRANTED = "mallory"


@dataclass(frozen=True)
class Stack:
    address: str
    es_url: str
    vectors: str


@dataclass(frozen=True)
class Vectorized:
    """The known-item project, vectorized by a task Datashare started."""

    project: str
    task_id: str
    queue: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory, es_url, temporal_address) -> Iterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("routing-temporal")
    config = {
        "es_address": es_url,
        "vector_db_uri": str(workdir / "vectors"),
        "temporal_address": temporal_address,
        "es_page_size": PAGE_SIZE,
        "es_retry_s": 30.0,
        "torch_threads": 1,
    }
    with temporal_worker_pool(workdir, n_workers=1, ml_worker_config=config) as pool:
        wait_for_temporal_workers(
            temporal_address,
            1,
            pool,
            log=workdir / "workers.log",
            timeout_s=READY_TIMEOUT_S,
        )
        yield Stack(temporal_address, es_url, config["vector_db_uri"])


@pytest.fixture(scope="module")
async def client(stack) -> Client:
    return await connect(MLWorkerConfig(temporal_address=stack.address))


def datashare(client: Client, routing: Routing) -> DatashareTemporal:
    return DatashareTemporal(client, routing)


def task_id(name: str) -> str:
    """An id as Datashare makes them: the task's name, then a UUID."""
    return f"{name}-{uuid.uuid4()}"


def granted(*projects: str) -> dict:
    return user(GRANTED, list(projects))


async def run(
    ds: DatashareTemporal, name: str, args: dict, *, group: str | None = None
) -> tuple[str, str, DatashareTask]:
    """Starts the task as Datashare does; once its workflow ended, the queue it
    was started on, its id and the task as Datashare reads it."""
    tid = task_id(name)
    queue = await ds.start_task(tid, name, args, group=group)
    await ds.wait(tid)
    return queue, tid, await ds.task(tid)


def result_of(task: DatashareTask):
    """The task's result as Datashare keeps it: JSON text (its task repository
    drops objects and lists), whose value is the task's result."""
    assert task.state == "DONE", task.error
    assert task.result_encoding == b"json/plain"
    assert isinstance(task.result, str), task.result
    return json.loads(task.result)


@pytest.fixture(scope="module")
async def vectorized(stack, client) -> Vectorized:
    project = f"test-{uuid.uuid4().hex[:10]}"
    es = es_client(stack.es_url)
    try:
        await seed_known_items(es, project)
    finally:
        await es.close()
    tid = task_id("create_vectorization_tasks")
    args = {
        "project": project,
        "defaultProject": project,
        "batch_size": BATCH_SIZE,
        "user": granted(project, "another-project"),
    }
    ds = datashare(client, Routing.GROUP)
    queue = await ds.start_task(
        tid, "create_vectorization_tasks", args, group="PYTHON_FANOUT"
    )
    await ds.wait(tid)
    return Vectorized(project, tid, queue)


async def test_a_vectorization_is_read_back_as_datashare_reads_it(vectorized, client):
    ds = datashare(client, Routing.GROUP)

    task = await ds.task(vectorized.task_id)

    assert vectorized.queue == "python_fanout"
    summary = result_of(task)
    assert summary["project"] == vectorized.project
    assert (summary["documents"], summary["new"], summary["failed"]) == (
        N_DOCS,
        N_DOCS,
        0,
    )
    assert summary["batches"] == -(-N_DOCS // BATCH_SIZE)
    assert summary["model"] == "english"
    # Progress reached MaxProgress: every document counted.
    description = await client.get_workflow_handle(vectorized.task_id).describe()
    attributes = description.typed_search_attributes
    assert task.progress == 1.0
    assert attributes.get(USER_ID) == GRANTED


async def test_a_continued_vectorization_keeps_one_input(vectorized, client):
    ds = datashare(client, Routing.GROUP)
    handle = client.get_workflow_handle(vectorized.task_id)
    description = await handle.describe()

    payloads = await ds.start_payloads(vectorized.task_id)

    # Continued as new: the latest run is not the first.
    assert description.run_id != handle.first_execution_run_id
    # Datashare's getArgs refuses more than one input, and reads the task's args
    # (its user) from it.
    (payload,) = payloads
    assert payload.metadata["encoding"] == b"json/plain"
    args = json.loads(payload.data)
    assert args["project"] == vectorized.project
    assert args["user"]["id"] == GRANTED


# A task, how Datashare was told to route it, and the queue that must give: the
# group as given (any case) under GROUP, the task's name under NAME.
ROUTES = [
    ("ping", Routing.GROUP, "PYTHON_SEARCH", "python_search"),
    ("ping", Routing.GROUP, "PYTHON", "python"),
    ("ping", Routing.GROUP, "Python", "python"),  # Datashare's own Python group
    ("ping", Routing.NAME, None, "ping"),
    ("find_most_similar", Routing.GROUP, "PYTHON_SEARCH", "python_search"),
    ("find_most_similar", Routing.GROUP, "Python_Search", "python_search"),
    ("find_most_similar", Routing.GROUP, "python", "python"),
    ("find_most_similar", Routing.NAME, None, "find_most_similar"),
    ("vectorization_status", Routing.GROUP, "PYTHON_FANOUT", "python_fanout"),
    ("vectorization_status", Routing.NAME, None, "vectorization_status"),
]


@pytest.mark.parametrize(("name", "routing", "group", "queue"), ROUTES)
async def test_each_route_reaches_the_workers(
    vectorized, client, name, routing, group, queue
):
    project = vectorized.project
    args: dict = {"user": granted(project)}
    if name != "ping":
        args |= {"project": project, "defaultProject": project}
    if name == "find_most_similar":
        args |= SEARCH

    started_on, _, task = await run(datashare(client, routing), name, args, group=group)

    assert started_on == queue
    result = result_of(task)
    assert task.progress == 1.0
    if name == "ping":
        assert result == "pong"
    elif name == "find_most_similar":
        assert_known_items_first(result)
    else:
        assert result["vectorized"] is True
        assert (result["documents"], result["vectorized_documents"]) == (
            N_DOCS,
            N_DOCS,
        )
        assert (result["new"], result["removed"]) == (0, 0)


async def test_a_vectorization_routed_by_name(stack, client, es, project):
    await seed(es, project, 16)
    args = {"project": project, "batch_size": 8, "user": granted(project)}

    queue, _, task = await run(
        datashare(client, Routing.NAME), "create_vectorization_tasks", args
    )

    assert queue == "create_vectorization_tasks"
    summary = result_of(task)
    assert (summary["documents"], summary["batches"], summary["failed"]) == (16, 2, 0)
    assert task.progress == 1.0


async def activity_attempts(client: Client, tid: str) -> list[int]:
    """The attempt of each activity started in the task's workflow."""
    handle: WorkflowHandle = client.get_workflow_handle(tid)
    return [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]


def refusal(task: DatashareTask) -> ApplicationError:
    assert task.state == "ERROR", task
    assert isinstance(task.error, ApplicationError), task.error
    return task.error


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("find_most_similar", SEARCH),
        ("vectorization_status", {}),
        ("create_vectorization_tasks", {"batch_size": BATCH_SIZE}),
    ],
)
async def test_a_user_not_granted_the_project_is_refused(
    vectorized, client, name, args
):
    project = vectorized.project
    args = {
        **args,
        "project": project,
        "defaultProject": project,
        "user": user(NOT_GRANTED, ["another-project"]),
    }

    _, tid, task = await run(
        datashare(client, Routing.GROUP), name, args, group="PYTHON_SEARCH"
    )

    error = refusal(task)
    assert error.type == "ProjectNotGranted"
    assert error.message == (f'user "{NOT_GRANTED}" is not granted project "{project}"')
    assert error.non_retryable
    # One attempt: a refusal is not retried.
    assert await activity_attempts(client, tid) == [1]


async def test_the_grant_is_checked_before_anything_is_read(client):
    # A project that does not exist: refused for the user's grant, not found
    # missing, so the check came first.
    args = {
        "project": "no-such-project",
        "queries": ["anything"],
        "user": user(NOT_GRANTED, ["another-project"]),
    }

    _, tid, task = await run(datashare(client, Routing.NAME), "find_most_similar", args)

    assert refusal(task).type == "ProjectNotGranted"
    assert await activity_attempts(client, tid) == [1]


async def test_bad_arguments_fail_with_their_error_class(vectorized, client):
    project = vectorized.project
    args = {
        "project": project,
        "queries": ["q"],
        "n_similar": 0,
        "user": granted(project),
    }

    _, tid, task = await run(
        datashare(client, Routing.GROUP), "find_most_similar", args, group="PYTHON"
    )

    error = refusal(task)
    assert error.type == "InvalidArguments"
    assert "invalid argument n_similar for task find_most_similar" in error.message
    assert await activity_attempts(client, tid) == [1]


async def test_a_task_id_is_started_once(client):
    ds = datashare(client, Routing.GROUP)
    tid = task_id("ping")
    await ds.start_task(tid, "ping", {}, group="PYTHON_SEARCH")
    await ds.wait(tid)

    # Datashare answers its task route's 200 (TaskAlreadyExists) on this.
    with pytest.raises(WorkflowAlreadyStartedError):
        await ds.start_task(tid, "ping", {}, group="PYTHON_SEARCH")


async def test_a_task_stopped_by_datashare_is_cancelled(client, es, project):
    await seed(es, project, 64)
    ds = datashare(client, Routing.GROUP)
    tid = task_id("create_vectorization_tasks")
    args = {"project": project, "batch_size": 1, "user": granted(project)}
    await ds.start_task(tid, "create_vectorization_tasks", args, group="PYTHON_FANOUT")

    # TaskManagerTemporal.stopTask: terminated, not cancelled, while it runs.
    handle = client.get_workflow_handle(tid)
    assert (await ds.task(tid)).state == "RUNNING"
    await handle.terminate(reason="terminated_by_user")

    assert (await ds.task(tid)).state == "CANCELLED"


def status_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of ``ml-worker status``'s queues table, by kind of worker."""
    table = stdout.split("Task queues", 1)[1].split("Vectorized projects", 1)[0]
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in table.splitlines()
        if line.startswith("│")
    ]
    return {row[0]: row[1:] for row in rows}


def test_status_shows_the_queues_the_workers_poll(stack):
    env = {
        "ML_WORKER_ENGINE": "temporal",
        "ML_WORKER_TEMPORAL_ADDRESS": stack.address,
        "ML_WORKER_ES_ADDRESS": stack.es_url,
        "ML_WORKER_VECTOR_DB_URI": stack.vectors,
        "COLUMNS": "200",
    }

    status = cli("status", env=env)

    assert status.returncode == 0, status.stdout + status.stderr
    rows = status_rows(status.stdout)
    # Each kind's group lower-cased (GROUP routing), then its tasks' names (NAME
    # routing); workers polling, counted on the first.
    assert {kind: row[0] for kind, row in rows.items()} == {
        "vectorize": "python, vectorize_docs",
        "search": (
            "python_search, ping, vectorization_status, find_most_similar,"
            " find_similar_documents"
        ),
        "fanout": "python_fanout, create_vectorization_tasks",
    }
    assert all(int(row[1]) >= 1 for row in rows.values()), status.stdout
