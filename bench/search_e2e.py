"""Searches end to end through the task service: ``find_most_similar`` idle and busy,
``find_similar_documents`` idle.

Each query goes the way ``ml-worker search`` sends it (``search_project``: a PUT to
icij-worker's HTTP task service, which stores the task in PostgreSQL and publishes it
to RabbitMQ; a search worker picks it up, searches and publishes its result; the
service consumes the result into PostgreSQL; the client polls the task and reads its
result). The clock runs from the submission to the result in hand, in this process.

The stack is the real one, on this machine: RabbitMQ, PostgreSQL, the task service,
worker pools started with ``ml-worker workers start --kind ...`` (one search worker,
one fan-out worker, ``--vectorizers`` vectorizing workers), and the in-memory
Elasticsearch-API server. A project of ``--docs`` documents is vectorized, then:

- idle: ``--queries`` searches, one after the other, nothing else running; then
  as many similar-documents tasks, for as many of the project's documents;
- busy: another project's ``--busy-batches`` documents are submitted as
  one-document batches while no vectorizing worker runs, so that they all wait on
  the broker; the
  vectorizing workers are started again, and the same searches run while they drain
  that backlog. Its depth is read from RabbitMQ's management API before and after.

Each search is split, by the task service's own times: the PUT; from the task's
creation, within the PUT, to its result event (publishing the task, queue, pick-up,
search, publishing the result, on the worker's clock); from there to the result in
hand (the service consuming the event, the client's polling, reading the result).
Medians of each are printed, and the slowest busy searches split so. Five
``ml-worker search`` processes are also timed on the idle stack, their start-up
included.

    uv run python -m bench.search_e2e [--queries 100] [--busy-batches 2000]
        [--vectorizers 2] [--storage-connections N]

``--storage-connections``: the task service's PostgreSQL connections (the harness's
default otherwise), to compare. About 15 minutes on 2 busy cores, most of it starting
workers and vectorizing. The last line printed is
``search_e2e idle_p50_ms=X idle_p99_ms=Y similar_p50_ms=S similar_p99_ms=T
busy_p50_ms=Z busy_p99_ms=W``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
from icij_worker import Task, TaskState

from ml_worker import documents
from ml_worker.cli.follow import WorkerCount, search_project, similar_documents
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    VECTORIZE_DOCS,
    WorkerKind,
    task_group,
)
from ml_worker.es_client import es_client
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker.task_client import wait_for_task
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import (
    TASK_STORAGE_CONNECTIONS,
    Postgres,
    RabbitMQ,
    es_emulator,
    free_port,
    task_service,
    worker_pool,
)

SEARCHED = "bench-searched"
BACKLOG = "bench-backlog"
WARM_UP = 5
CLI_RUNS = 5
TIMEOUT_S = 900.0
N_RESULTS = 10  # documents each search or similar-documents task asks for
POLL_S = 0.5  # the harness's own waits for set-up, not measured

_TOPICS = [
    "offshore company",
    "shipping invoice",
    "mining licence",
    "bank transfer",
    "customs declaration",
    "clinical trial",
    "land concession",
    "football transfer",
    "oil cargo",
    "charity donation",
    "audit report",
    "board minutes",
]
_PLACES = ["Panama", "Cyprus", "Rotterdam", "Lagos", "Jersey", "Singapore", "Geneva"]


def document(rng: random.Random, i: int) -> str:
    sentences = [
        f"The {rng.choice(_TOPICS)} of {1990 + i % 35} went through"
        f" {rng.choice(_PLACES)} with reference R{rng.randrange(10**6):06d}."
        for _ in range(rng.randint(3, 8))
    ]
    return " ".join(sentences)


def queries(n: int) -> list[str]:
    """Distinct short queries, as people type them."""
    rng = random.Random(1)
    verbs = ["paid", "hidden", "signed", "late"]
    return [
        f"{rng.choice(_TOPICS)} {rng.choice(_PLACES)} {rng.choice(verbs)} {i}"
        for i in range(n)
    ]


async def index_project(es_url: str, project: str, contents: list[str]) -> None:
    es = es_client(es_url, timeout_s=300)
    try:
        await create_project_index(es, project)
        items = (
            (
                f"{project}-{i:06d}",
                document_source(c, path=f"/{project}/{i:06d}.txt"),
                None,
            )
            for i, c in enumerate(contents)
        )
        await bulk_index(es, project, items)
    finally:
        await es.close()


class TimedClient(ICIJTaskClient):
    """The CLI's client, also recording each task it creates and its PUT's time."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.created: list[tuple[str, float]] = []  # (task id, PUT seconds)
        self.gets = 0

    async def create_task(self, name, args, *, group, task_id=None) -> str:
        started = time.perf_counter()
        task_id = await super().create_task(name, args, group=group, task_id=task_id)
        self.created.append((task_id, time.perf_counter() - started))
        return task_id

    async def get_task(self, task_id: str) -> Task:
        self.gets += 1
        return await super().get_task(task_id)


@dataclass
class Search:
    total_ms: float
    put_ms: float
    to_result_event_ms: float  # task created -> result published by the worker
    after_ms: float  # result published -> result in hand
    gets: int


async def timed_tasks(
    client: TimedClient, ask: Callable[[str], Awaitable[list]], items: list[str]
) -> list[Search]:
    """Each of ``items`` asked with ``ask``, one after the other, timed."""
    searches = []
    for item in items:
        gets = client.gets
        started_wall, started = time.time(), time.perf_counter()
        hits = await ask(item)
        total_s = time.perf_counter() - started
        ended_wall = started_wall + total_s
        gets = client.gets - gets
        if len(hits) != N_RESULTS:
            raise RuntimeError(f"{len(hits)} documents for {item!r}, not {N_RESULTS}")
        task_id, put_s = client.created[-1]
        task = await client.get_task(task_id)
        assert task.completed_at is not None
        created, completed = task.created_at.timestamp(), task.completed_at.timestamp()
        searches.append(
            Search(
                total_ms=total_s * 1000,
                put_ms=put_s * 1000,
                to_result_event_ms=(completed - created) * 1000,
                after_ms=(ended_wall - completed) * 1000,
                gets=gets,
            )
        )
    return searches


async def timed_searches(
    client: TimedClient, texts: list[str], workers: WorkerCount
) -> list[Search]:
    """``find_most_similar``, as ``ml-worker search`` asks it."""

    async def ask(text: str) -> list:
        hits = await search_project(
            client, SEARCHED, [text], workers=workers, n_similar=N_RESULTS
        )
        return hits[0]

    return await timed_tasks(client, ask, texts)


async def timed_similar(
    client: TimedClient, doc_ids: list[str], workers: WorkerCount
) -> list[Search]:
    """``find_similar_documents``, as ``ml-worker similar`` asks it."""

    async def ask(doc_id: str) -> list:
        return await similar_documents(
            client, SEARCHED, doc_id, workers=workers, n_similar=N_RESULTS
        )

    return await timed_tasks(client, ask, doc_ids)


def summary(searches: list[Search]) -> dict[str, float]:
    totals = np.array([s.total_ms for s in searches])
    return {
        "p50_ms": float(np.percentile(totals, 50)),
        "p99_ms": float(np.percentile(totals, 99)),
        "put_ms": statistics.median(s.put_ms for s in searches),
        "to_result_event_ms": statistics.median(s.to_result_event_ms for s in searches),
        "after_ms": statistics.median(s.after_ms for s in searches),
        "gets": statistics.median(s.gets for s in searches),
    }


def split(search: Search) -> str:
    return (
        f"{search.total_ms:.0f} ms (PUT {search.put_ms:.0f}, to result published"
        f" {search.to_result_event_ms:.0f}, then {search.after_ms:.0f},"
        f" {search.gets} polls)"
    )


def describe(phase: str, figures: dict[str, float]) -> str:
    return (
        f"{phase}: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms;"
        f" medians: PUT {figures['put_ms']:.0f} ms, created -> result published"
        f" {figures['to_result_event_ms']:.0f} ms, published -> result in hand"
        f" {figures['after_ms']:.0f} ms, {figures['gets']:.0f} polls"
    )


async def wait_done(client: ICIJTaskClient, task_id: str) -> Any:
    """The task's result, once it is done."""
    async with asyncio.timeout(TIMEOUT_S):
        task = await wait_for_task(client, task_id)
    if task.state is not TaskState.DONE:
        errors = await client.get_task_errors(task_id)
        raise RuntimeError(f"task {task_id} ended {task.state.value}: {errors}")
    return await client.get_task_result(task_id, done=True)


async def vectorize(client: ICIJTaskClient, project: str, batch_size: int) -> dict:
    """The project vectorized; the run's summary."""
    args = {"project": project, "batch_size": batch_size}
    group = task_group(CREATE_VECTORIZATION_TASKS)
    task_id = await client.create_task(CREATE_VECTORIZATION_TASKS, args, group=group)
    return await wait_done(client, task_id)


async def queue_backlog(client: ICIJTaskClient, es_url: str, project: str) -> int:
    """Every document of ``project`` as a one-document ``vectorize_docs`` batch,
    submitted at once: a backlog as deep as many projects' runs, or a client
    submitting batches itself, make it (a fan-out keeps only a few in flight)."""
    es = es_client(es_url, timeout_s=300)
    batches = 0
    try:
        async for page in documents.document_id_pages(es, project, page_size=1000):
            for doc_id in page:
                args = {"project": project, "docs": [doc_id]}
                await client.create_task(
                    VECTORIZE_DOCS, args, group=task_group(VECTORIZE_DOCS)
                )
                batches += 1
    finally:
        await es.close()
    return batches


def cli_search_ms(url: str, vhost: str, texts: list[str]) -> list[float]:
    """Wall times of ``ml-worker search`` processes, start-up included."""
    env = {
        **os.environ,
        "ML_WORKER_TASK_SERVICE_URL": url,
        "ICIJ_WORKER_RABBITMQ_VHOST": vhost,
    }
    times = []
    for text in texts:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ml_worker.cli", "search", SEARCHED, text, "--json"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


class Stack:
    def __init__(
        self, stack: ExitStack, workdir: Path, es_url: str, args: argparse.Namespace
    ):
        self.rabbitmq, postgres = RabbitMQ(), Postgres()
        self.rabbitmq.check()
        postgres.check()
        self._stack, self._workdir = stack, workdir
        self.vhost = stack.enter_context(self.rabbitmq.temporary_vhost())
        self.url = stack.enter_context(
            task_service(
                workdir,
                rabbitmq=self.rabbitmq,
                vhost=self.vhost,
                postgres=postgres,
                port=free_port(),
                storage_connections=args.storage_connections,
            )
        )
        self.config = {
            "es_address": es_url,
            "task_service_url": self.url,
            "vector_db_uri": str(workdir / "vectors"),
            # Threads split between the vectorizers: more than cores only contend.
            "torch_threads": max(1, (os.cpu_count() or 1) // args.vectorizers),
        }
        self.n_vectorizers = args.vectorizers
        for kind in (WorkerKind.SEARCH, WorkerKind.FANOUT):
            stack.enter_context(self.pool(kind, 1))

    @contextmanager
    def pool(self, kind: WorkerKind, n_workers: int):
        workdir = self._workdir / kind.value
        workdir.mkdir(exist_ok=True)
        with worker_pool(
            workdir,
            n_workers=n_workers,
            rabbitmq=self.rabbitmq,
            vhost=self.vhost,
            ml_worker_config=self.config,
            kind=kind,
            wait=True,
        ) as pool:
            yield pool

    def vectorizers(self):
        return self.pool(WorkerKind.VECTORIZE, self.n_vectorizers)

    def queued(self) -> int:
        """Batches waiting on the broker, as of the management API's last figures."""
        return self.rabbitmq.task_queue(self.vhost, WorkerKind.VECTORIZE.group).waiting

    def wait_queued(self, at_least: int) -> int:
        """Until ``at_least`` batches wait (the management API's figures lag by its
        statistics interval)."""
        deadline = time.monotonic() + TIMEOUT_S
        while (depth := self.queued()) < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{depth} batches queued after {TIMEOUT_S:.0f}s")
            time.sleep(POLL_S)
        return depth

    async def workers(self, kind: WorkerKind) -> int | None:
        """How many workers take ``kind``'s tasks (the CLI's ``WorkerCount``)."""
        return await asyncio.to_thread(
            self.rabbitmq.task_queue_consumers, self.vhost, kind.group
        )


async def run(args: argparse.Namespace, workdir: Path, es_url: str) -> dict:
    rng = random.Random(0)
    await index_project(es_url, SEARCHED, [document(rng, i) for i in range(args.docs)])
    # Tiny documents: the backlog is many batches, not much work for the model.
    tiny = [
        f"Backlog note {i} about {rng.choice(_TOPICS)}."
        for i in range(args.busy_batches)
    ]
    await index_project(es_url, BACKLOG, tiny)
    texts = queries(WARM_UP + args.queries)
    with ExitStack() as stack:
        s = Stack(stack, workdir, es_url, args)
        client = TimedClient(s.url)
        async with client:
            with s.vectorizers():
                await vectorize(client, SEARCHED, 32)
            # The vectorizers are stopped: the backlog's batches wait on the broker.
            # Idle means nothing else running, hence measured here.
            await timed_searches(client, texts[:WARM_UP], s.workers)
            idle = summary(await timed_searches(client, texts[WARM_UP:], s.workers))
            print(describe("idle", idle), flush=True)
            doc_ids = [f"{SEARCHED}-{i:06d}" for i in range(WARM_UP + args.queries)]
            await timed_similar(client, doc_ids[:WARM_UP], s.workers)
            similar = summary(await timed_similar(client, doc_ids[WARM_UP:], s.workers))
            print(describe("idle, similar documents", similar), flush=True)
            cli = cli_search_ms(s.url, s.vhost, texts[WARM_UP : WARM_UP + CLI_RUNS])
            # Without bytecode files every start compiles each module it imports.
            bytecode = "not written" if sys.flags.dont_write_bytecode else "written"
            print(
                "idle, `ml-worker search` processes: median"
                f" {statistics.median(cli):.0f} ms of {CLI_RUNS}, start-up included"
                f" (bytecode files {bytecode})",
                flush=True,
            )

            started = time.monotonic()
            backlog = await queue_backlog(client, es_url, BACKLOG)
            submit_s = time.monotonic() - started
            queued = s.wait_queued(backlog)
            print(
                f"backlog: {backlog} batches submitted in {submit_s:.0f} s,"
                f" {queued} queued",
                flush=True,
            )
            with s.vectorizers():
                before = s.queued()
                started = time.monotonic()
                searches = await timed_searches(client, texts[WARM_UP:], s.workers)
                busy_s = time.monotonic() - started
                after = s.queued()
            busy = summary(searches)
            print(
                f"{describe('busy', busy)}; batches queued {before} at the start,"
                f" {after} after {busy_s:.0f} s",
                flush=True,
            )
            slowest = sorted(searches, key=lambda s: s.total_ms)[-3:]
            print(f"busy, the slowest: {', '.join(map(split, slowest))}", flush=True)
    return {"idle": idle, "similar": similar, "busy": busy, "queued_after": after}


def main() -> None:
    # Stopped by a signal, still stop what it started (services, worker processes).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100, help="searches per phase")
    parser.add_argument("--docs", type=int, default=300, help="documents searched")
    parser.add_argument(
        "--busy-batches", type=int, default=2000, help="batches of the busy backlog"
    )
    parser.add_argument(
        "--vectorizers", type=int, default=2, help="vectorizing workers draining it"
    )
    parser.add_argument(
        "--storage-connections",
        type=int,
        default=TASK_STORAGE_CONNECTIONS,
        help="the task service's PostgreSQL connections",
    )
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="ml-worker-bench-") as tmp,
        es_emulator() as es_url,
    ):
        result = asyncio.run(run(args, Path(tmp), es_url))
    print(f"load average after: {os.getloadavg()}", flush=True)
    idle, similar, busy = result["idle"], result["similar"], result["busy"]
    print(
        f"search_e2e idle_p50_ms={idle['p50_ms']:.0f} idle_p99_ms={idle['p99_ms']:.0f}"
        f" similar_p50_ms={similar['p50_ms']:.0f}"
        f" similar_p99_ms={similar['p99_ms']:.0f}"
        f" busy_p50_ms={busy['p50_ms']:.0f} busy_p99_ms={busy['p99_ms']:.0f}"
    )


if __name__ == "__main__":
    main()
