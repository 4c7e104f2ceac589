"""One Temporal worker process: ``python -m ml_worker.temporal KIND [-c FILE]``.

It polls every queue Datashare may start its kind's tasks on
(``queues.polled_queues``) with every workflow, and its kind's activity queue with
its kind's activities (``ml-worker workers start`` runs and restarts these
processes). Its dependencies are every engine's (``dependencies``), set up once at
start and torn down at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

from ml_worker.constants import TASK_KINDS, WorkerKind
from ml_worker.dependencies import worker_dependencies
from ml_worker.exceptions import MissingSearchAttributes
from ml_worker.temporal.activities import ACTIVITIES
from ml_worker.temporal.connection import check_search_attributes, connect
from ml_worker.temporal.queues import activity_queue, polled_queues
from ml_worker.temporal.workflows import WORKFLOWS

logger = logging.getLogger(__name__)

# Activities one process runs at once: one batch at a time, as an icij-worker
# worker does (the model takes every core it is given); searches and fan-outs wait
# on I/O, a few at once.
MAX_ACTIVITIES = {WorkerKind.VECTORIZE: 1, WorkerKind.SEARCH: 4, WorkerKind.FANOUT: 4}
# Within the pool's grace (pool.STOP_GRACE_S): running activities may finish.
SHUTDOWN_GRACE = timedelta(seconds=5)


def workers(client: Client, kind: WorkerKind) -> list[Worker]:
    """The Temporal workers of one process of ``kind``: one per queue it polls,
    the activities on their own queue's."""
    return [
        Worker(
            client,
            task_queue=queue,
            workflows=WORKFLOWS,
            activities=ACTIVITIES[kind] if queue == activity_queue(kind) else [],
            max_concurrent_activities=MAX_ACTIVITIES[kind],
            graceful_shutdown_timeout=SHUTDOWN_GRACE,
        )
        for queue in polled_queues(kind)
    ]


async def run(kind: WorkerKind, config_path: Path | None) -> None:
    task_names = [name for name, k in TASK_KINDS.items() if k is kind]
    async with worker_dependencies(config_path, task_names) as config:
        client = await connect(config)
        await check_search_attributes(client)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with AsyncExitStack() as stack:
            for worker in workers(client, kind):
                await stack.enter_async_context(worker)
            logger.info(
                "%s worker polling task queues %s",
                kind.value,
                ", ".join(polled_queues(kind)),
            )
            await stop.wait()
            logger.info("stopping")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ml_worker.temporal")
    parser.add_argument("kind", type=WorkerKind, choices=list(WorkerKind))
    parser.add_argument("-c", "--config", type=Path, help="ml-worker settings (JSON)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args.kind, args.config))
    except MissingSearchAttributes as e:
        # Settings to fix, not a crash: one line, and the exit code of bad input.
        logger.error("%s", e)
        raise SystemExit(2) from None
