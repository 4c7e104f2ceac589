"""Many hosts writing one project's table on object storage, with faults.

Two worker hosts (network namespaces, see tests/hosts.py) run a pool of two workers
each, started with ``ml-worker workers start``. They share nothing but the services
they reach by address: RabbitMQ, Elasticsearch, the task service and an S3 server.
No file lock, no local coordination: the table stays exact by Lance's commit
protocol and RabbitMQ's redelivery alone. Every scenario checks the table passage
by passage.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import pytest
from icij_worker import TaskState

from ml_worker import store
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.local_stack import (
    RabbitMQ,
    free_port,
    task_service,
    wait_for_workers,
    worker_pool,
)
from tests.corpus import filler
from tests.hosts import Host, can_make_hosts, hosts
from tests.stack import (
    batch_tasks,
    create_table,
    submit_batches,
    wait_done,
    wait_state,
)
from tests.tables import assert_table_exact, seed

pytestmark = [
    pytest.mark.scale,
    pytest.mark.skipif(not can_make_hosts(), reason="network namespaces need root"),
]

N_HOSTS = 2
WORKERS_PER_HOST = 2


@dataclass
class Cluster:
    url: str
    hosts: list[Host]
    workdir: Path
    rabbitmq: RabbitMQ
    vhost: str
    configs: list[dict]  # each host's worker settings
    vectors: tuple[str, dict]  # the database's URI and storage options, from here
    pools: list = field(default_factory=list)
    _stacks: list[ExitStack] = field(default_factory=list)

    def db(self):
        uri, options = self.vectors
        return store.connect(uri, storage_options=options)

    def table(self, project):
        return store.open_table(self.db(), project)

    def start_pool(self, i: int) -> None:
        host = self.hosts[i]
        workdir = self.workdir / f"host-{i}"
        workdir.mkdir(exist_ok=True)
        rabbitmq = replace(
            self.rabbitmq,
            host=host.address,
            port=host.port("amqp"),
            management_port=host.port("management"),
        )
        stack = ExitStack()
        pool = stack.enter_context(
            worker_pool(
                workdir,
                n_workers=WORKERS_PER_HOST,
                rabbitmq=rabbitmq,
                vhost=self.vhost,
                ml_worker_config=self.configs[i],
                wrap=host.command,
            )
        )
        self.pools[i : i + 1] = [pool]
        self._stacks[i : i + 1] = [stack]

    def wait_for_workers(self) -> None:
        for i, pool in enumerate(self.pools):
            wait_for_workers(
                self.rabbitmq,
                self.vhost,
                WORKERS_PER_HOST * (i + 1),
                pool,
                log=self.workdir / f"host-{i}" / "workers.log",
            )

    def kill_host(self, i: int) -> None:
        """Every process of host ``i``'s pool, at once, as when the host dies."""
        os.killpg(self.pools[i].pid, signal.SIGKILL)
        self.pools[i].wait()
        self._stacks[i].close()

    def worker_log(self, i: int) -> str:
        return (self.workdir / f"host-{i}" / "workers.log").read_text(errors="replace")

    def close(self) -> None:
        for stack in self._stacks:
            stack.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, es_url, rabbitmq, postgres, s3):
    workdir = tmp_path_factory.mktemp("scale")
    es = urlparse(es_url)
    with (
        s3.bucket() as bucket,
        rabbitmq.temporary_vhost() as vhost,
        task_service(
            workdir, rabbitmq=rabbitmq, vhost=vhost, postgres=postgres, port=free_port()
        ) as url,
    ):
        uri = f"s3://{bucket}/vectors"
        service = urlparse(url)
        s3_endpoint = urlparse(s3.url)
        services = {
            "amqp": (rabbitmq.host, rabbitmq.port),
            "management": (rabbitmq.host, rabbitmq.management_port),
            "es": (es.hostname, es.port),
            "tasks": (service.hostname, service.port),
            "s3": (s3_endpoint.hostname, s3_endpoint.port),
        }
        with hosts(N_HOSTS, services) as made:
            configs = [
                {
                    "es_address": host.url("es"),
                    "task_service_url": host.url("tasks"),
                    "vector_db_uri": uri,
                    "vector_db_storage_options": s3.storage_options(host.url("s3")),
                    "es_retry_s": 30.0,
                }
                for host in made
            ]
            cluster = Cluster(
                url,
                made,
                workdir,
                rabbitmq,
                vhost,
                configs,
                (uri, s3.storage_options()),
            )
            try:
                for i in range(N_HOSTS):
                    cluster.start_pool(i)
                cluster.wait_for_workers()
                yield cluster
            finally:
                cluster.close()


@pytest.fixture
async def client(cluster):
    async with ICIJTaskClient(cluster.url) as client:
        yield client


async def _fan_out(client, project: str, *, runs: int, batch_size: int) -> list[dict]:
    """The summaries of ``runs`` fan-outs of the project submitted at once, once
    they are done."""
    parents = [
        await client.create_task(
            CREATE_VECTORIZATION_TASKS,
            {"project": project, "batch_size": batch_size},
            group=task_group(CREATE_VECTORIZATION_TASKS),
        )
        for _ in range(runs)
    ]
    await wait_done(client, parents)
    return [await client.get_task_result(p) for p in parents]


async def _batches(cluster, es, client, project: str, *, batch_size: int) -> list[str]:
    """The project's batch tasks, all submitted at once, as the tests that hurt
    them need (a fan-out keeps only a few in flight); the table they write to is
    created first, as a fan-out creates it."""
    await asyncio.to_thread(create_table, cluster.db(), project)
    return await submit_batches(client, es, project, batch_size=batch_size)


async def _assert_batches_done(client, children, doc_ids: set[str]) -> None:
    """Every batch done, each document accounted for once by its batch."""
    await wait_done(client, children)
    counts = [await client.get_task_result(c) for c in children]
    assert sum(c["documents"] for c in counts) == len(doc_ids)
    for c in counts:
        assert c["new"] + c["changed"] + c["unchanged"] == c["documents"], c


async def test_hosts_write_one_table_every_batch_twice(cluster, es, client, project):
    """Two fan-outs of one project at once: every batch is written twice, often at
    the same moment on two hosts, and the table creation races too."""
    doc_ids = await seed(es, project, 200)
    summaries = await _fan_out(client, project, runs=2, batch_size=4)
    for summary in summaries:
        assert (summary["batches"], summary["documents"]) == (50, len(doc_ids))
        assert (summary["failed"], summary["missing"]) == (0, 0), summary
        assert summary["new"] + summary["changed"] + summary["unchanged"] == len(
            doc_ids
        )
    assert len(await batch_tasks(client, project)) == 2 * 50
    written = sum(s["new"] + s["changed"] for s in summaries)
    # A batch's second writer finds its documents already written.
    assert len(doc_ids) <= written <= 2 * len(doc_ids)
    await assert_table_exact(cluster.table(project), es, project)
    for i in range(N_HOSTS):
        wrote = rf"project {re.escape(project)}: [1-9]\d* documents new"
        assert re.search(wrote, cluster.worker_log(i)), f"host {i} wrote nothing"


async def _slow_run(
    cluster, es, client, project: str, *, n_docs: int, done: int
) -> tuple[set[str], list[str]]:
    """The documents and batch tasks of a run of long documents, once ``done`` of
    them are done: batches of two that keep the workers busy a while."""
    rng = random.Random(n_docs)
    n_roots = n_docs - n_docs // 5  # datashare_corpus's root documents
    long_docs = {f"doc-{i:04d}": filler(rng, 80) for i in range(0, n_roots, 2)}
    doc_ids = await seed(es, project, n_docs, special=long_docs)
    children = await _batches(cluster, es, client, project, batch_size=2)
    await wait_state(client, children, TaskState.DONE, at_least=done)
    return doc_ids, children


async def test_a_host_dies_mid_run(cluster, es, client, project):
    doc_ids, children = await _slow_run(
        cluster, es, client, project, n_docs=120, done=5
    )
    await asyncio.to_thread(cluster.kill_host, 0)
    try:
        await _assert_batches_done(client, children, doc_ids)
        await assert_table_exact(cluster.table(project), es, project)
    finally:
        await asyncio.to_thread(_restart_host, cluster, 0)


def _restart_host(cluster: Cluster, i: int) -> None:
    cluster.start_pool(i)
    cluster.wait_for_workers()


@pytest.mark.parametrize(
    "request_line",
    [
        # A data file of the write, before its commit.
        rb"PUT /[^ ]*\.lance/data/[^ ]* HTTP",
        # A commit: the manifest of a new table version.
        rb"PUT /[^ ]*\.lance/_versions/[^ ]* HTTP",
    ],
    ids=["data-file", "commit"],
)
async def test_a_worker_killed_in_the_middle_of_a_write(
    cluster, es, client, project, request_line
):
    """The worker sending the request dies before the store receives it whole; the
    supervisor starts another and the broker redelivers the batch."""
    doc_ids = await seed(es, project, 80)
    host = cluster.hosts[1]
    children = await _batches(cluster, es, client, project, batch_size=4)
    proxy = host.proxies["s3"]
    killed = []

    def kill_sender(client_address):
        pid = host.pid_of_client(client_address[1])
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    proxy.trap(request_line, kill_sender)
    await _assert_batches_done(client, children, doc_ids)
    assert proxy.sprung.is_set() and killed, "no write went through host 1's proxy"
    await assert_table_exact(cluster.table(project), es, project)
    await asyncio.to_thread(cluster.wait_for_workers)
