"""Faults and bad input, on real services, each checked against the exact table.

Four worker processes in two pools (so one pool can be killed while the other
carries on), the task service, RabbitMQ and PostgreSQL are real; Elasticsearch is
reached through a TCP proxy that can cut it off and bring it back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
from urllib.parse import urlparse

import pytest
from icij_worker import TaskState

from ml_worker import store
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import (
    free_port,
    task_stack,
    wait_for_workers,
    worker_pool,
)
from tests.corpus import filler
from tests.faults import TcpProxy
from tests.stack import (
    batch_tasks,
    create_table,
    fan_out,
    run_failing_task,
    run_task,
    submit_batches,
    wait_done,
    wait_ended,
    wait_state,
)
from tests.tables import assert_table_exact, seed, table_passages

pytestmark = pytest.mark.reliability

TIMEOUT_S = 120
# Document ids per Elasticsearch page: a fan-out can be held between two pages.
ES_PAGE_SIZE = 100
# What a pool logs when one of its workers exits on its own (ml_worker.pool).
EXITED = ": restarting it in"
# aio-pika's robust connection, trying again to reach the broker.
RECONNECTING = "Reconnecting after"


class Stack:
    def __init__(self, url, config, proxy, pools, workdir, rabbitmq, vhost):
        self.url, self.config, self.proxy, self.pools = url, config, proxy, pools
        self.workdir, self.rabbitmq, self.vhost = workdir, rabbitmq, vhost

    def worker_logs(self, pool: str = "*") -> str:
        """The logs of every pool, or of the one named."""
        return "".join(p.read_text() for p in self.workdir.glob(f"{pool}/workers.log"))

    def db(self):
        return store.connect(self.config["vector_db_uri"])

    def table(self, project):
        return store.open_table(self.db(), project)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, es_url, rabbitmq, postgres):
    workdir = tmp_path_factory.mktemp("reliability")
    target = urlparse(es_url)
    proxy = TcpProxy(target.hostname, target.port, free_port())
    proxy.start()
    try:
        with task_stack(
            workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=proxy.url
        ) as (vhost, url, settings):
            config = {**settings, "es_retry_s": 60.0, "es_page_size": ES_PAGE_SIZE}
            with (
                _pool(workdir / "a", rabbitmq, vhost, config) as pool_a,
                _pool(workdir / "b", rabbitmq, vhost, config) as pool_b,
            ):
                yield Stack(
                    url, config, proxy, [pool_a, pool_b], workdir, rabbitmq, vhost
                )
    finally:
        proxy.close()


def _pool(workdir, rabbitmq, vhost, config, n_workers=2):
    workdir.mkdir()
    return worker_pool(
        workdir,
        n_workers=n_workers,
        rabbitmq=rabbitmq,
        vhost=vhost,
        ml_worker_config=config,
    )


@pytest.fixture
async def client(stack):
    async with ICIJTaskClient(stack.url) as client:
        yield client


async def _assert_table_exact(stack, es, project):
    await assert_table_exact(stack.table(project), es, project)


async def _vectorize(client, project, **args) -> tuple[dict, int]:
    """A whole run's summary, and how many documents it embedded."""
    summary = await fan_out(client, project, **args)
    assert summary["failed"] == 0, summary["failures"]
    return summary, summary["new"] + summary["changed"]


async def test_many_workers_write_one_table(stack, es, client, project):
    doc_ids = await seed(es, project, 200)
    summary, written = await _vectorize(client, project, batch_size=4)
    assert summary["batches"] == 50
    assert written == len(doc_ids)
    await _assert_table_exact(stack, es, project)


async def test_rerun_embeds_only_new_and_changed_and_drops_deleted(
    stack, es, client, project
):
    doc_ids = await seed(es, project, 60)
    await _vectorize(client, project, batch_size=10)
    rng = random.Random(7)
    await bulk_index(
        es,
        project,
        [
            ("new-1", document_source(filler(rng, 5), path="/new/1.txt"), None),
            ("new-2", document_source(filler(rng, 5), path="/new/2.txt"), None),
            (
                "doc-0003",
                document_source(filler(rng, 40), path="/leak/changed.txt"),
                None,
            ),
        ],
    )
    for gone in ("doc-0005", "doc-0009"):
        await es.delete(index=project, id=gone, refresh=True)

    _, written = await _vectorize(client, project, batch_size=10)

    assert written == 3
    table = stack.table(project)
    assert {p[0] for p in table_passages(table)} == (doc_ids | {"new-1", "new-2"}) - {
        "doc-0005",
        "doc-0009",
    }
    await _assert_table_exact(stack, es, project)
    _, written = await _vectorize(client, project, batch_size=10, rebuild=True)
    assert written == len(doc_ids) + 2 - 2
    await _assert_table_exact(stack, es, project)


async def test_elasticsearch_outage_mid_run(stack, es, client, project):
    """Batches that meet an outage wait for Elasticsearch and then complete.

    Batches take well under a second, so an outage started from outside would
    often come after the run. Instead pool "b" is frozen while the run's tasks are
    created: the batches the broker hands it wait there until Elasticsearch is cut
    off, while pool "a" writes others before the outage.
    """
    failed = f"Elasticsearch at {stack.proxy.url} failed"
    failures_before = stack.worker_logs().count(failed)
    await _seed_long_docs(es, project)
    frozen = stack.pools[1]
    os.killpg(frozen.pid, signal.SIGSTOP)
    try:
        # Submitted here rather than by a fan-out task, which the broker might
        # hand to pool "b".
        create_table(stack.db(), project)
        children = await submit_batches(client, es, project, batch_size=2)
        await wait_state(client, children, TaskState.DONE, at_least=1)
        stack.proxy.stop()
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    try:
        # Up until a retry has met the outage too, not only the first attempt.
        await _wait_for_log(stack, failed, more_than=failures_before + 1, timeout_s=30)
    finally:
        stack.proxy.start()
    await wait_done(client, children)
    await _assert_table_exact(stack, es, project)


async def _seed_long_docs(es, project) -> None:
    rng = random.Random(11)
    long_docs = {f"doc-{i:04d}": filler(rng, 60) for i in range(48)}
    await seed(es, project, 60, special=long_docs)


async def _start_a_run_of_slow_batches(stack, es, client, project) -> list[str]:
    """A run's batch tasks, once the first is done and the others pending."""
    await _seed_long_docs(es, project)
    create_table(stack.db(), project)
    children = await submit_batches(client, es, project, batch_size=2)
    await wait_done(client, children[:1])
    return children


BAD_TASKS = [
    (
        "create_vectorization_tasks",
        {"project": "no-such-index"},
        "has no Elasticsearch index",
    ),
    ("create_vectorization_tasks", {"project": "../x"}, "invalid project"),
    ("create_vectorization_tasks", {"project": "/abs/path"}, "invalid project"),
    ("vectorize_docs", {"project": "../x", "docs": ["a"]}, "invalid project"),
    ("find_most_similar", {"project": "../x", "queries": ["q"]}, "invalid project"),
    (
        "find_most_similar",
        {"project": "never-vectorized", "queries": ["q"]},
        "no vectors yet",
    ),
    (
        "create_vectorization_tasks",
        {"project": "p", "batch_size": 0},
        "invalid argument batch_size for task create_vectorization_tasks",
    ),
    (
        "create_vectorization_tasks",
        {"project": "p", "colour": "red"},
        "unknown argument(s)",
    ),
]


@pytest.mark.parametrize(("name", "args", "message"), BAD_TASKS)
async def test_bad_task_input_is_a_clear_task_error(client, name, args, message):
    error = await run_failing_task(client, name, args)
    assert message in error


async def test_bad_search_input(stack, es, client, project):
    await seed(es, project, 4)
    await _vectorize(client, project)
    cases: list[tuple[dict[str, object], str]] = [
        ({"queries": []}, "invalid argument queries"),
        ({"queries": ["q"], "n_similar": 0}, "invalid argument n_similar"),
        ({"queries": ["q"], "n_similar": -3}, "invalid argument n_similar"),
    ]
    for args, message in cases:
        error = await run_failing_task(
            client, "find_most_similar", {"project": project, **args}
        )
        assert message in error


async def test_unknown_model_leaves_no_table(stack, es, client, project):
    await seed(es, project, 4)
    error = await run_failing_task(
        client,
        "create_vectorization_tasks",
        {"project": project, "model": "no-such-org/no-such-model"},
    )
    assert 'unknown embedding model "no-such-org/no-such-model"' in error
    with pytest.raises(store.ProjectNotVectorized):
        stack.table(project)


async def test_empty_index_creates_no_task(stack, es, client, project):
    await create_project_index(es, project)
    summary = await fan_out(client, project)
    assert (summary["batches"], summary["documents"]) == (0, 0)
    assert await batch_tasks(client, project) == []


async def test_odd_contents_are_vectorized_exactly(stack, es, client, project):
    rng = random.Random(5)
    junk = bytes(rng.randrange(256) for _ in range(3000)).decode("latin-1")
    huge = filler(rng, 200) * 1000  # about 20 MB
    odd = {
        "no-content": None,
        "empty": "",
        "blank": "   \n\t  ",
        "binary-junk": junk,
        "control-chars": "nul\x00 bell\x07 escape\x1b text",
        "huge": huge,
    }
    await create_project_index(es, project)
    await bulk_index(
        es,
        project,
        [
            (doc_id, document_source(content, path=f"/odd/{doc_id}"), None)
            for doc_id, content in odd.items()
        ],
    )
    _summary, written = await _vectorize(client, project, batch_size=2)
    assert written == len(odd)
    await _assert_table_exact(stack, es, project)
    assert "only the first 2000000 of its" in stack.worker_logs()
    # The worker lived through it all.
    assert await run_task(client, "ping", {}) == "pong"


async def test_broker_connection_lost_mid_run(stack, es, client, project):
    """Workers that lose the broker mid-batch: their batches go to the others.

    A third pool reaches RabbitMQ through a proxy: cutting it is a broker restart
    as those workers see it, without touching the machine's broker. icij-worker's
    workers exit when their connection drops (a supervisor restarts them, e.g.
    compose's restart policy); what they had not acknowledged is redelivered.
    """
    amqp_proxy = TcpProxy(stack.rabbitmq.host, stack.rabbitmq.port, free_port())
    amqp_proxy.start()
    proxied = dataclasses.replace(stack.rabbitmq, port=amqp_proxy.port)
    # A worker whose consumer loses the broker exits; one that loses it between two
    # messages may reconnect instead (seen once in a full run): either way it saw.
    noticed = (EXITED, RECONNECTING)
    noticed_before = sum(stack.worker_logs("c").count(line) for line in noticed)
    try:
        with _pool(stack.workdir / "c", proxied, stack.vhost, stack.config) as pool:
            await asyncio.to_thread(
                wait_for_workers,
                stack.rabbitmq,
                stack.vhost,
                6,
                pool,
                log=stack.workdir / "c" / "workers.log",
            )
            children = await _start_a_run_of_slow_batches(stack, es, client, project)
            amqp_proxy.stop()
            try:
                await _wait_for_log(
                    stack, noticed, more_than=noticed_before, timeout_s=60, pool="c"
                )
            finally:
                amqp_proxy.start()
            await wait_done(client, children)
    finally:
        amqp_proxy.close()
    await _assert_table_exact(stack, es, project)


async def test_cancelling_the_fan_out_stops_it(stack, es, client, project):
    """A cancelled run creates no batch after it and leaves none queued: those
    in flight end (done, or cancelled by the run as it stops)."""
    n_docs = 3 * ES_PAGE_SIZE
    await seed(es, project, n_docs)
    parent = await client.create_task(
        CREATE_VECTORIZATION_TASKS,
        {"project": project, "batch_size": 1},
        group=task_group(CREATE_VECTORIZATION_TASKS),
    )
    while not (batches := await batch_tasks(client, project)):
        await asyncio.sleep(0.1)
    await wait_ended(client, batches[:1])
    await client.cancel_task(parent)
    states = await wait_ended(client, [parent])
    assert states[parent] is TaskState.CANCELLED
    created = await batch_tasks(client, project)
    ended = await wait_ended(client, created)
    assert set(ended.values()) <= {TaskState.DONE, TaskState.CANCELLED}
    assert len(created) < n_docs
    # Every batch the run created had ended, and none came after them.
    assert await batch_tasks(client, project) == created


async def test_a_worker_killed_mid_batch(stack, es, client, project):
    rng = random.Random(3)
    long_docs = {f"doc-{i:04d}": filler(rng, 400) for i in range(0, 40, 2)}
    await seed(es, project, 48, special=long_docs)
    create_table(stack.db(), project)
    children = await submit_batches(client, es, project, batch_size=2)
    # Pool "a" has two workers: with three batches running, one runs in pool "b".
    await wait_state(client, children, TaskState.RUNNING, at_least=3)
    victim = stack.pools[1]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    states = await wait_ended(client, children)
    assert set(states.values()) == {TaskState.DONE}
    await _assert_table_exact(stack, es, project)


async def _wait_for_log(
    stack,
    line: str | tuple[str, ...],
    *,
    more_than: int,
    timeout_s: float,
    pool: str = "*",
) -> None:
    """Until the workers' logs hold ``line`` (or any of these lines, summed) more
    than ``more_than`` times."""
    lines = (line,) if isinstance(line, str) else line
    for _ in range(int(timeout_s * 10)):
        logs = stack.worker_logs(pool)
        if sum(logs.count(one) for one in lines) > more_than:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"workers never logged {lines!r} in {timeout_s}s")
