"""Fair share between projects: a small project's vectorization beside a large one's.

On the real stack of either engine (icij-worker: RabbitMQ, PostgreSQL, the task
service, a pool started with ``ml-worker workers start``; Temporal: its development
server and a pool of Temporal workers), with the default settings: two vectorizing
workers, one search worker, two fan-out workers. Two projects of synthetic documents
(one passage each) are indexed in the in-memory Elasticsearch-API server (or
``ML_WORKER_ES_ADDRESS``):

1. the small project (``--small``, 100 documents) is vectorized alone, timed from its
   submission to its summary;
2. it is rebuilt while the large project (``--large``, 5,000 documents) vectorizes:
   submitted once the large run's first batches have ended, and timed the same way;
3. the large run is followed to its end.

What is fair: the small project takes about the time it takes alone, not the large
project's. The last line printed is ``fair_share engine=E small_alone_s=A
small_beside_s=B ratio=B/A large_s=L`` (target: ratio at most 2).

    uv run python -m bench.fair_share [--engine icij|temporal] [--small 100]
        [--large 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from icij_worker import TaskState

from ml_worker.config import EngineName, MLWorkerConfig
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, task_group
from ml_worker.engines import engine_for
from ml_worker.es_client import es_client
from ml_worker.task_client import TaskClient, wait_for_task
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
    temporal_server,
    temporal_worker_pool,
    wait_for_temporal_workers,
    worker_pool,
)

TIMEOUT_S = 3600.0
_WORDS = [
    "ship",
    "cargo",
    "invoice",
    "company",
    "director",
    "account",
    "transfer",
    "bank",
    "offshore",
    "trust",
    "lease",
    "property",
    "minister",
    "contract",
    "shares",
    "nominee",
    "registry",
    "audit",
    "payment",
]


def document(rng: random.Random) -> str:
    """About 60 words: one passage."""
    return " ".join(rng.choice(_WORDS) for _ in range(60)) + "."


async def index_project(es_url: str, project: str, n_docs: int) -> None:
    rng = random.Random(n_docs)
    es = es_client(es_url)
    try:
        await create_project_index(es, project)
        docs = (
            (f"{project}-{i:05d}", document_source(document(rng), path=f"/{i}"), None)
            for i in range(n_docs)
        )
        await bulk_index(es, project, docs)
    finally:
        await es.close()


async def submit(client: TaskClient, project: str, **args: Any) -> str:
    args = {"project": project, **args}
    group = task_group(CREATE_VECTORIZATION_TASKS)
    return await client.create_task(CREATE_VECTORIZATION_TASKS, args, group=group)


async def ended(client: TaskClient, task_id: str) -> Any:
    """The run's summary, once it ended."""
    async with asyncio.timeout(TIMEOUT_S):
        task = await wait_for_task(client, task_id)
    if task.state is not TaskState.DONE:
        errors = await client.get_task_errors(task_id)
        raise RuntimeError(f"{task_id} ended {task.state.value}: {errors}")
    return await client.get_task_result(task_id, done=True)


async def timed(client: TaskClient, project: str, **args: Any) -> float:
    started = time.monotonic()
    await ended(client, await submit(client, project, **args))
    return time.monotonic() - started


async def measure(config: MLWorkerConfig, small: str, large: str) -> dict:
    async with engine_for(config).task_client() as client:
        alone_s = await timed(client, small)
        large_started = time.monotonic()
        large_id = await submit(client, large)
        async with asyncio.timeout(TIMEOUT_S):
            while ((await client.get_task(large_id)).progress or 0.0) <= 0.0:
                await asyncio.sleep(0.2)
        beside_s = await timed(client, small, rebuild=True)
        large_progress = (await client.get_task(large_id)).progress or 0.0
        await ended(client, large_id)
        large_s = time.monotonic() - large_started
    return {
        "alone_s": alone_s,
        "beside_s": beside_s,
        "large_s": large_s,
        "large_progress_when_small_done": large_progress,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", type=EngineName, default=EngineName.ICIJ)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=5000)
    args = parser.parse_args()
    small, large = f"fair-small-{os.getpid()}", f"fair-large-{os.getpid()}"
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        es_url = os.environ.get("ML_WORKER_ES_ADDRESS") or stack.enter_context(
            es_emulator()
        )
        for project, n in ((small, args.small), (large, args.large)):
            asyncio.run(index_project(es_url, project, n))
        settings = {"es_address": es_url, "vector_db_uri": str(workdir / "vectors")}
        if args.engine is EngineName.TEMPORAL:
            address = stack.enter_context(temporal_server(workdir))
            settings |= {"engine": "temporal", "temporal_address": address}
            pool = stack.enter_context(
                temporal_worker_pool(workdir, n_workers=2, ml_worker_config=settings)
            )
            wait_for_temporal_workers(address, 2, pool, log=workdir / "workers.log")
            config = MLWorkerConfig.model_validate(settings)
        else:
            rabbitmq, postgres = RabbitMQ(), Postgres()
            vhost, url, settings = stack.enter_context(
                task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url)
            )
            stack.enter_context(
                worker_pool(
                    workdir,
                    n_workers=2,
                    rabbitmq=rabbitmq,
                    vhost=vhost,
                    ml_worker_config=settings,
                    wait=True,
                )
            )
            config = MLWorkerConfig(task_service_url=url)
        print(f"{args.engine} stack ready; small {args.small}, large {args.large}")
        figures = asyncio.run(measure(config, small, large))
    print(
        f"small alone {figures['alone_s']:.1f} s; beside the large run"
        f" {figures['beside_s']:.1f} s, done when the large run was at"
        f" {figures['large_progress_when_small_done']:.0%}"
    )
    print(
        f"fair_share engine={args.engine} small_alone_s={figures['alone_s']:.1f}"
        f" small_beside_s={figures['beside_s']:.1f}"
        f" ratio={figures['beside_s'] / figures['alone_s']:.2f}"
        f" large_s={figures['large_s']:.1f}"
    )


if __name__ == "__main__":
    main()
