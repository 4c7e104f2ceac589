"""Contract tests: ml-worker's tasks published on RabbitMQ as Datashare 21's
``TaskManagerAmqp`` publishes them with ``--taskRoutingStrategy GROUP``, and their
events read back where it reads them.

Datashare's side is ``tests/datashare_amqp.py`` (from its source, 21.18). The
workers are real icij-worker processes of ``ml-worker workers start`` (one
vectorizing, one search, the fan-out ones) in a fresh virtual host, beside
icij-worker's task service, which vectorizes the test's project.

What holds: Datashare's routing key is the group as given, case kept, and ml-worker's
workers consume exactly those keys; the arguments, typed by Jackson at every depth
(the user's grants a wrapped list), are read as plain values and checked.
What does not, with icij-worker 0.19.5 (``test_a_task_exactly_as_datashare_sends_it``,
an expected failure): its worker refuses Datashare's message, whose ``createdAt`` is
a typed ``java.util.Date``, and Datashare's consumer refuses icij-worker's events,
whose ``createdAt`` is ISO text and whose lists are untyped (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import aio_pika
import httpx
import pytest

from ml_worker.constants import WorkerKind
from ml_worker.es_client import es_client
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.local_stack import task_stack, worker_pool
from tests.datashare_amqp import (
    TASKS_EXCHANGE,
    datashare_refuses,
    event_queue,
    publish,
    task_message,
)
from tests.datashare_temporal import user
from tests.stack import fan_out
from tests.tables import seed
from tests.test_cli import cli
from tests.test_routing_temporal import status_rows

pytestmark = pytest.mark.e2e

EVENT_TIMEOUT_S = 300
# What icij-worker's worker logs when a task message is not one it reads.
REFUSED = "failed to deserialize incoming task"


@dataclass(frozen=True)
class AmqpStack:
    workdir: Path
    vhost: str
    url: str  # icij-worker's task service
    settings: dict  # the workers'
    project: str  # vectorized


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory, es_url, rabbitmq, postgres
) -> AsyncIterator[AmqpStack]:
    workdir = tmp_path_factory.mktemp("routing-amqp")
    with task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url) as (
        vhost,
        url,
        settings,
    ):
        config = {**settings, "es_retry_s": 30.0}
        with worker_pool(
            workdir,
            n_workers=1,
            rabbitmq=rabbitmq,
            vhost=vhost,
            ml_worker_config=config,
            wait=True,
        ):
            project = f"test-{uuid.uuid4().hex[:10]}"
            es = es_client(es_url)
            try:
                await seed(es, project, 16)
            finally:
                await es.close()
            async with ICIJTaskClient(url) as service:
                await fan_out(service, project, batch_size=8)
            yield AmqpStack(workdir, vhost, url, config, project)


@pytest.fixture(scope="module")
async def channel(stack, rabbitmq):
    url = (
        f"amqp://{rabbitmq.user}:{rabbitmq.password}@{rabbitmq.host}:{rabbitmq.port}"
        f"/{quote(stack.vhost, safe='')}"
    )
    connection = await aio_pika.connect(url)
    async with connection:
        yield await connection.channel()


def bindings(rabbitmq, vhost: str) -> set[tuple[str, str]]:
    """(routing key, queue) of every binding of Datashare's task exchange."""
    answer = httpx.get(
        f"{rabbitmq.management_url}/api/exchanges/{quote(vhost, safe='')}"
        f"/{TASKS_EXCHANGE}/bindings/source",
        auth=(rabbitmq.user, rabbitmq.password),
        timeout=5,
    )
    answer.raise_for_status()
    return {(b["routing_key"], b["destination"]) for b in answer.json()}


def test_each_group_as_given_reaches_its_workers(stack, rabbitmq):
    bound = bindings(rabbitmq, stack.vhost)

    # Datashare publishes with the group as given: ml-worker's workers consume
    # exactly these keys, each from its own queue.
    for kind in WorkerKind:
        assert (kind.group, f"TASK.{kind.group}") in bound
        assert rabbitmq.task_queue_consumers(stack.vhost, kind.group) >= 1
    # Case kept: another spelling of a group, or a task's name (NAME routing),
    # reaches no queue, and RabbitMQ drops the task.
    keys = {key for key, _ in bound}
    assert keys.isdisjoint({"python", "Python_Search", "find_most_similar"})


def test_status_shows_the_queues_the_workers_consume(stack, rabbitmq):
    env = {
        "ML_WORKER_ENGINE": "icij",
        "ML_WORKER_ES_ADDRESS": stack.settings["es_address"],
        "ML_WORKER_VECTOR_DB_URI": stack.settings["vector_db_uri"],
        "ML_WORKER_TASK_SERVICE_URL": stack.url,
        "ICIJ_WORKER_RABBITMQ_HOST": rabbitmq.host,
        "ICIJ_WORKER_RABBITMQ_PORT": str(rabbitmq.port),
        "ICIJ_WORKER_RABBITMQ_MANAGEMENT_PORT": str(rabbitmq.management_port),
        "ICIJ_WORKER_RABBITMQ_USER": rabbitmq.user,
        "ICIJ_WORKER_RABBITMQ_PASSWORD": rabbitmq.password,
        "ICIJ_WORKER_RABBITMQ_VHOST": quote(stack.vhost, safe=""),
        "COLUMNS": "200",
    }

    status = cli("status", env=env)

    assert status.returncode == 0, status.stdout + status.stderr
    rows = status_rows(status.stdout)
    # The queue of each group as Datashare publishes it, case kept.
    assert {kind: row[0] for kind, row in rows.items()} == {
        "vectorize": "TASK.PYTHON",
        "search": "TASK.PYTHON_SEARCH",
        "fanout": "TASK.PYTHON_FANOUT",
    }
    assert all(int(row[1]) >= 1 for row in rows.values()), status.stdout


async def events_of(queue, task_id: str, *, until: set[str]) -> list[dict]:
    """The events of the task, as Datashare's consumer receives them, until one
    of the types ``until``."""
    events: list[dict] = []
    async with asyncio.timeout(EVENT_TIMEOUT_S), queue.iterator() as messages:
        async for message in messages:
            await message.ack()
            event = json.loads(message.body)
            if event.get("taskId") != task_id:
                continue
            events.append(event)
            if event["@type"] in until:
                return events
    raise AssertionError(f"the events of {task_id} stopped")


async def run_as_datashare(channel, group: str, name: str, args: dict, **message):
    """The task published as Datashare publishes it, but for ``message``'s
    fields; its events up to its result or error."""
    queue = await event_queue(channel)
    task_id = f"{name}-{uuid.uuid4()}"
    published = {
        **task_message(task_id, name, args, created_at=datetime.now(UTC)),
        **message,
    }
    await publish(channel, group, published)
    return await events_of(queue, task_id, until={"ResultEvent", "ErrorEvent"})


def created_ms() -> int:
    """A creation date as icij-worker reads one (not Datashare's typed Date)."""
    return int(datetime.now(UTC).timestamp() * 1000)


async def test_typed_arguments_are_read_and_checked(stack, channel):
    project = stack.project
    granted = user("alice", [project])
    search = {"project": project, "defaultProject": project, "user": granted}
    search["queries"] = ["the offshore trust", "a cargo of copper"]

    *_, pong = await run_as_datashare(
        channel, "PYTHON_SEARCH", "ping", {"user": granted}, createdAt=created_ms()
    )
    *_, found = await run_as_datashare(
        channel, "PYTHON_SEARCH", "find_most_similar", search, createdAt=created_ms()
    )
    refused_search = {**search, "user": user("mallory", ["another-project"])}
    *_, refused = await run_as_datashare(
        channel,
        "PYTHON_SEARCH",
        "find_most_similar",
        refused_search,
        createdAt=created_ms(),
    )

    assert pong["result"]["value"] == "pong"
    # The typed list of queries, one list of hits each.
    hits = found["result"]["value"]
    assert [len(h) > 0 for h in hits] == [True, True]
    # The typed user's grants, read as a list: refused, not retried.
    assert refused["@type"] == "ErrorEvent"
    assert refused["error"]["name"] == "ProjectNotGranted"
    assert refused["error"]["message"] == (
        f'user "mallory" is not granted project "{project}"'
    )
    assert refused["retriesLeft"] == 0


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="icij-worker 0.19.5 and Datashare 21 cannot read each other's dates and"
    " lists (docs/deploy.md)",
)
async def test_a_task_exactly_as_datashare_sends_it(stack, channel):
    log = stack.workdir / "workers.log"
    refusals = log.read_text().count(REFUSED)
    queue = await event_queue(channel)
    task_id = f"ping-{uuid.uuid4()}"
    message = task_message(
        task_id, "ping", {"user": user("alice", [])}, created_at=datetime.now(UTC)
    )

    await publish(channel, "PYTHON_SEARCH", message)

    # The worker answers with the task's events, or refuses its message.
    events: list[dict] = []
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        while not events or events[-1]["@type"] not in ("ResultEvent", "ErrorEvent"):
            if log.read_text().count(REFUSED) > refusals:
                raise AssertionError(f"the worker refused Datashare's {message}")
            received = await queue.get(no_ack=True, fail=False)
            if received is None:
                await asyncio.sleep(0.2)
            elif (event := json.loads(received.body)).get("taskId") == task_id:
                events.append(event)
    for event in events:
        assert datashare_refuses(event) is None, event
    assert events[-1]["result"]["value"] == "pong"
