"""Vectorization throughput: the real pipeline against the model's own ceiling.

One run measures, on the same documents:

- the ceiling: the configured model encoding the documents' passages directly, in
  this process (torch's default threads), at the best number of texts per model
  call of ``TEXTS_PER_CALL``, which the workers then use too; measured right before
  and right after each end-to-end run, whose ratio is to the mean of the two;
- end to end: the project vectorized through the real services: documents in an
  Elasticsearch-API server (the in-memory emulator), ``create_vectorization_tasks``
  submitted to icij-worker's HTTP task service, tasks through RabbitMQ to worker
  processes, passages written to LanceDB; with 1 worker, then with N, each worker's
  model given cores / N threads; ``--runs`` times each (3), the run of median
  ratio kept.

The end-to-end time runs from the submission of ``create_vectorization_tasks`` to
the completion of its last ``vectorize_docs`` task, as the task service recorded
them. Worker start-up (importing torch, loading the model: about 20 s) is left out:
timing starts once every worker consumes the task queue. Each worker's memory is
sampled: its RSS when half of the first run's tasks are done and after the last
run, and its peak (VmHWM).

    uv run python -m bench.throughput [--quick] [--docs N] [--workers N] [--runs R]

The last line printed is
``throughput e2e_docs_s=X ceiling_docs_s=Y ratio=R workers=N`` for the best worker
count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from icij_worker import Task, TaskState

from ml_worker import embedding
from ml_worker.cli.follow import wait_for_task
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.es_client import es_client
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker.vectorization import passages_of
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import (
    Postgres,
    RabbitMQ,
    es_emulator,
    task_stack,
    worker_pool,
)

PROJECT = "bench-throughput"
DEMO_CORPUS = (
    Path(__file__).parent.parent / "ml_worker_dev" / "data" / "demo_corpus.jsonl"
)
TEXTS_PER_CALL = (16, 32, 64, 128)
SWEEP_PASSAGES = 256
QUICK_SWEEP_PASSAGES = 64
WORDS_PER_DOC = (60, 500)
SEED = 3
TIMEOUT_S = 1800


def corpus(n_docs: int) -> list[str]:
    """Documents of 60 to 500 words made of the demo corpus's sentences."""
    sentences = []
    for line in DEMO_CORPUS.read_text().splitlines():
        if line.strip():
            content = json.loads(line)["content"]
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", content) if s.strip()]
    rng = random.Random(SEED)
    docs = []
    for _ in range(n_docs):
        target = rng.randint(*WORDS_PER_DOC)
        words: list[str] = []
        while len(words) < target:
            words += rng.choice(sentences).split()
        docs.append(" ".join(words))
    return docs


def passages(docs: list[str], function: embedding.ModelEmbedder) -> list[str]:
    """The passages vectorize_docs writes for these documents."""
    return [p.text for doc in docs for p in passages_of(doc, function)]


class Ceiling:
    """The model alone encoding the documents' passages, in this process."""

    def __init__(self, docs: list[str], config: MLWorkerConfig, sweep_passages: int):
        function = embedding.embedder(config.model)
        if not isinstance(function, embedding.Embedder):
            raise SystemExit(f"{config.model}: not a sentence-transformers model")
        self._model = function.embedding_model
        self._n_docs = len(docs)
        self.texts = passages(docs, function)
        self._model.encode(self.texts[:64], batch_size=64)  # warm-up
        self.texts_per_call = self._best_texts_per_call(self.texts[:sweep_passages])

    def _best_texts_per_call(self, sample: list[str]) -> int:
        best = (0.0, 0)
        for texts_per_call in TEXTS_PER_CALL:
            started = time.perf_counter()
            self._model.encode(
                sample, batch_size=texts_per_call, normalize_embeddings=True
            )
            passages_s = len(sample) / (time.perf_counter() - started)
            print(
                f"  model batch_size={texts_per_call}: {passages_s:.1f} passages/s",
                flush=True,
            )
            best = max(best, (passages_s, texts_per_call))
        return best[1]

    def docs_s(self) -> float:
        """Documents a second, every passage encoded at the best texts per call."""
        started = time.perf_counter()
        self._model.encode(
            self.texts, batch_size=self.texts_per_call, normalize_embeddings=True
        )
        return self._n_docs / (time.perf_counter() - started)


async def index_corpus(es_url: str, docs: list[str]) -> None:
    es = es_client(es_url)
    try:
        await create_project_index(es, PROJECT)
        items = (
            (f"doc-{i:06d}", document_source(doc, path=f"/bench/doc-{i:06d}.txt"), None)
            for i, doc in enumerate(docs)
        )
        await bulk_index(es, PROJECT, items)
    finally:
        await es.close()


class WorkerMemory:
    """RSS samples of the worker pool's worker processes, from /proc."""

    def __init__(self, pool_pid: int):
        self.pool_pid = pool_pid
        self.at_half: dict[int, int] = {}

    def workers(self) -> list[int]:
        # The pool's children, each running one worker (`icij_worker ... -n 1`).
        pids = []
        for pid in descendants(self.pool_pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"icij_worker" in cmdline:
                pids.append(pid)
        return sorted(pids)

    def sample(self, key: str) -> dict[int, int]:
        return {pid: status_kib(pid, key) for pid in self.workers()}


def descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        children += [int(c) for c in text]
    return children + [g for c in children for g in descendants(c)]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def _mib(samples: dict[int, int]) -> str:
    return ", ".join(f"{kib / 1024:.0f}" for kib in samples.values()) + " MiB"


async def end_to_end(
    workdir: Path,
    es_url: str,
    n_docs: int,
    n_workers: int,
    app_config: dict,
    ceiling: Ceiling,
    runs: int,
) -> dict:
    """The figures of the median of ``runs`` runs, each compared to the ceiling
    measured right before and right after it.

    A machine sharing its host with others can change speed by a third within
    minutes: the ceiling of the moment is compared, and the median of several runs
    kept. Every run after the first rebuilds the project's table.
    """
    rabbitmq, postgres = RabbitMQ(), Postgres()
    rabbitmq.check()
    postgres.check()
    with ExitStack() as stack:
        vhost, url, settings = stack.enter_context(
            task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url)
        )
        config = {**app_config, **settings}
        started = time.monotonic()
        pool = stack.enter_context(
            worker_pool(
                workdir,
                n_workers=n_workers,
                rabbitmq=rabbitmq,
                vhost=vhost,
                ml_worker_config=config,
                wait=True,
            )
        )
        startup_s = time.monotonic() - started
        memory = WorkerMemory(pool.pid)
        ceilings = [ceiling.docs_s()]  # the workers wait for tasks meanwhile
        results = []
        async with ICIJTaskClient(url) as client:
            for run in range(runs):
                elapsed, n_tasks = await _vectorize(
                    client, n_docs, rebuild=run > 0, memory=memory if run == 0 else None
                )
                ceilings.append(ceiling.docs_s())
                around = (ceilings[-2] + ceilings[-1]) / 2
                results.append(
                    {
                        "docs_s": n_docs / elapsed,
                        "ceiling_docs_s": around,
                        "ratio": n_docs / elapsed / around,
                        "elapsed_s": elapsed,
                        "tasks": n_tasks,
                    }
                )
        at_end, peak = memory.sample("VmRSS"), memory.sample("VmHWM")
    median = sorted(results, key=lambda r: r["ratio"])[len(results) // 2]
    return {
        **median,
        "workers": n_workers,
        "ratios": [r["ratio"] for r in results],
        "startup_s": startup_s,
        "rss_half": memory.at_half,
        "rss_end": at_end,
        "peak": peak,
    }


async def _vectorize(
    client: ICIJTaskClient, n_docs: int, *, rebuild: bool, memory: WorkerMemory | None
) -> tuple[float, int]:
    """Seconds from the submission of the run to the end of its last task, and its
    number of tasks."""
    parent_id = await client.create_task(
        CREATE_VECTORIZATION_TASKS,
        {"project": PROJECT, "rebuild": rebuild},
        group=task_group(CREATE_VECTORIZATION_TASKS),
    )
    (parent,) = await wait_done(client, [parent_id])
    summary = await done_result(client, parent_id)
    children = await wait_done(client, summary["tasks"], memory=memory)
    written = sum([await done_result(client, c.id) for c in children])
    if written != n_docs:
        raise RuntimeError(f"{written} documents vectorized, not {n_docs}")
    # The task service's own times: the polling's interval is not counted.
    ended = max(c.completed_at for c in children)
    return (ended - parent.created_at).total_seconds(), len(children)


async def done_result(client: ICIJTaskClient, task_id: str) -> Any:
    """The result of a task that is done."""
    result = await client.get_task_result(task_id, done=True)
    if result is None:
        raise RuntimeError(f"task {task_id} is done without a result")
    return result


async def wait_done(
    client: ICIJTaskClient, task_ids: list[str], memory: WorkerMemory | None = None
) -> list[Task]:
    """These tasks, once all done.

    Followed one at a time, in their order of creation, which is about the order
    the queue hands them out: each poll asks the service for one task. Its CPU, and
    this process's, are taken from the workers measured; asking for every pending
    task each time cost them 4% of the machine.
    """
    done = []
    async with asyncio.timeout(TIMEOUT_S):
        for task_id in task_ids:
            task = await wait_for_task(client, task_id)
            if task.state is not TaskState.DONE:
                errors = await client.get_task_errors(task_id)
                raise RuntimeError(f"task {task_id} ended {task.state.value}: {errors}")
            done.append(task)
            half_done = len(done) >= len(task_ids) / 2
            if memory is not None and not memory.at_half and half_done:
                memory.at_half = memory.sample("VmRSS")
    return done


def main() -> None:
    # Stopped by a signal, still stop what it started (services, worker processes).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="150 documents")
    parser.add_argument("--docs", type=int, help="documents in the project (600)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="N (default: CPU count)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per worker count, the median kept"
    )
    args = parser.parse_args()
    n_docs = args.docs or (150 if args.quick else 600)
    n_cores = os.cpu_count() or 1
    config = MLWorkerConfig()

    docs = corpus(n_docs)
    device = embedding.resolve_device()
    precision = embedding.resolve_precision(device)
    print(f"{n_docs} documents, device {device} ({precision}), {n_cores} CPUs")
    sweep = QUICK_SWEEP_PASSAGES if args.quick else SWEEP_PASSAGES
    ceiling = Ceiling(docs, config, sweep)
    print(
        f"{len(ceiling.texts)} passages; best texts per call {ceiling.texts_per_call}",
        flush=True,
    )

    results = []
    with (
        tempfile.TemporaryDirectory(prefix="ml-worker-bench-") as tmp,
        es_emulator() as es_url,
    ):
        asyncio.run(index_corpus(es_url, docs))
        for n_workers in sorted({1, args.workers}):
            workdir = Path(tmp) / f"workers-{n_workers}"
            workdir.mkdir()
            # Threads split between workers: more threads than cores only contend.
            app_config = {
                "embed_batch_size": ceiling.texts_per_call,
                # --quick's 150 documents in the default 64 a task would make 3
                # tasks: too few to spread over the workers.
                "vectorize_batch_size": 16
                if args.quick
                else config.vectorize_batch_size,
                "torch_threads": max(1, n_cores // n_workers),
            }
            result = asyncio.run(
                end_to_end(
                    workdir, es_url, n_docs, n_workers, app_config, ceiling, args.runs
                )
            )
            results.append(result)
            print(
                f"e2e workers={n_workers} torch_threads={app_config['torch_threads']}:"
                f" ratios {', '.join(f'{r:.2f}' for r in result['ratios'])}; median run"
                f" {result['docs_s']:.1f} docs/s ({result['tasks']} tasks,"
                f" {result['elapsed_s']:.1f}s), ceiling around it"
                f" {result['ceiling_docs_s']:.1f} docs/s; start-up"
                f" {result['startup_s']:.0f}s, not counted; worker RSS at half of the"
                f" first run {_mib(result['rss_half'])}, at end {_mib(result['rss_end'])},"
                f" peak {_mib(result['peak'])}",
                flush=True,
            )
    best = max(results, key=lambda r: r["ratio"])
    print(
        f"throughput e2e_docs_s={best['docs_s']:.1f}"
        f" ceiling_docs_s={best['ceiling_docs_s']:.1f} ratio={best['ratio']:.2f}"
        f" workers={best['workers']}"
    )


if __name__ == "__main__":
    main()
