"""Worker memory: the RSS of each kind of worker, idle and under load.

The workers are real worker processes, started as production starts them: one pool
(``ml-worker workers start -n 1``: one vectorizing, one search and one fan-out
worker), each worker ``python -m icij_worker workers start ml_worker.icij.app.app -n 1 -g
GROUP``, fed through RabbitMQ (a temporary vhost) by icij-worker's HTTP task service
(PostgreSQL storage). The project's documents are in the Elasticsearch-API emulator,
its table in a local LanceDB directory.

The load: ``create_vectorization_tasks`` of the project (the fan-out worker), its
``vectorize_docs`` batches (the vectorizing worker), then ``--searches`` hybrid
``find_most_similar`` tasks, one query each, submitted one after the other (the
search worker). The query encoder's ONNX export, when not cached yet, runs in a child
process of the search worker's and is not counted.

With ``-n 1``, icij-worker runs the worker in the process the command starts. Each
worker's figures come from ``/proc/PID/status``: VmRSS once it consumes its queue
(idle: what its group's tasks need is preloaded by then), VmRSS after the load, and
VmHWM, the peak (busy).

    uv run python -m bench.worker_memory [--docs N] [--searches N]

The last line printed is ``worker_memory search_idle_mib=X search_busy_mib=Y
vectorize_idle_mib=Z vectorize_busy_mib=W`` (busy: VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.throughput import (
    PROJECT,
    corpus,
    descendants,
    done_result,
    index_corpus,
    status_kib,
    wait_done,
)
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    FIND_MOST_SIMILAR,
    WorkerKind,
    task_group,
)
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.local_stack import (
    Postgres,
    RabbitMQ,
    es_emulator,
    task_stack,
    worker_pool,
)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def worker_processes(pool_pid: int) -> dict[WorkerKind, int]:
    """Each kind's worker process: the ``icij_worker`` command the pool started."""
    found = {}
    for pid in descendants(pool_pid):
        command = _cmdline(pid)
        if "icij_worker" in command:
            group = command[command.index("-g") + 1]
            (kind,) = [k for k in WorkerKind if k.group == group]
            found[kind] = pid
    return found


def _sample(processes: dict[WorkerKind, int], key: str) -> dict[WorkerKind, float]:
    return {kind: status_kib(pid, key) / 1024 for kind, pid in processes.items()}


async def _load(url: str, n_docs: int, queries: list[str]) -> None:
    async with ICIJTaskClient(url) as client:
        parent = await client.create_task(
            CREATE_VECTORIZATION_TASKS,
            {"project": PROJECT},
            group=task_group(CREATE_VECTORIZATION_TASKS),
        )
        await wait_done(client, [parent])
        batches = (await done_result(client, parent))["tasks"]
        await wait_done(client, batches)
        written = sum([await done_result(client, b) for b in batches])
        if written != n_docs:
            raise RuntimeError(f"{written} documents vectorized, not {n_docs}")
        for query in queries:
            search = await client.create_task(
                FIND_MOST_SIMILAR,
                {"project": PROJECT, "queries": [query]},
                group=task_group(FIND_MOST_SIMILAR),
            )
            await wait_done(client, [search])


def _queries(docs: list[str], n: int) -> list[str]:
    """``n`` queries: the first words of the documents, in turn."""
    return [" ".join(docs[i % len(docs)].split()[:6]) for i in range(n)]


def _load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=256, help="documents vectorized")
    parser.add_argument("--searches", type=int, default=100, help="searches run")
    args = parser.parse_args()

    print(
        f"load average {_load_average()} (1, 5 min), {os.cpu_count()} CPUs", flush=True
    )
    docs = corpus(args.docs)
    rabbitmq, postgres = RabbitMQ(), Postgres()
    rabbitmq.check()
    postgres.check()
    with ExitStack() as stack:
        workdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="ml-worker-bench-"))
        )
        es_url = stack.enter_context(es_emulator())
        asyncio.run(index_corpus(es_url, docs))
        vhost, url, config = stack.enter_context(
            task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url)
        )
        pool = stack.enter_context(
            worker_pool(
                workdir,
                n_workers=1,
                rabbitmq=rabbitmq,
                vhost=vhost,
                ml_worker_config=config,
                wait=True,
            )
        )
        processes = worker_processes(pool.pid)
        idle = _sample(processes, "VmRSS")
        asyncio.run(_load(url, len(docs), _queries(docs, args.searches)))
        after, peak = _sample(processes, "VmRSS"), _sample(processes, "VmHWM")
    for kind in WorkerKind:
        print(
            f"{kind} worker RSS: idle {idle[kind]:.0f} MiB, after the load"
            f" {after[kind]:.0f} MiB, peak {peak[kind]:.0f} MiB"
        )
    print(f"load average {_load_average()} (1, 5 min)")
    search, vectorize = WorkerKind.SEARCH, WorkerKind.VECTORIZE
    print(
        f"worker_memory search_idle_mib={idle[search]:.0f}"
        f" search_busy_mib={peak[search]:.0f}"
        f" vectorize_idle_mib={idle[vectorize]:.0f}"
        f" vectorize_busy_mib={peak[vectorize]:.0f}"
    )


if __name__ == "__main__":
    main()
