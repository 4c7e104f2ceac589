"""One Temporal worker process: ``python -m ml_worker.temporal KIND [-c FILE]``.

It polls the task queue of its kind's group with that kind's workflows and
activities (``ml-worker workers start`` runs and restarts these processes). Its
dependencies are those of icij-worker's workers, set up once at start
(``dependencies.DEPENDENCIES``) and torn down at exit; it needs no task client, as
its fan-out schedules the batches itself.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import signal
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker

from ml_worker import dependencies as deps
from ml_worker.constants import TASK_KINDS, WorkerKind
from ml_worker.exceptions import MissingSearchAttributes
from ml_worker.temporal.activities import ACTIVITIES
from ml_worker.temporal.client import check_search_attributes, connect
from ml_worker.temporal.workflows import WORKFLOWS

logger = logging.getLogger(__name__)

_NOT_NEEDED = {"task client"}
# Activities one process runs at once: one batch at a time, as an icij-worker
# worker does (the model takes every core it is given); searches and fan-outs wait
# on I/O, a few at once.
MAX_ACTIVITIES = {WorkerKind.VECTORIZE: 1, WorkerKind.SEARCH: 4, WorkerKind.FANOUT: 4}
# Within the pool's grace (pool.STOP_GRACE_S): running activities may finish.
SHUTDOWN_GRACE = timedelta(seconds=5)


@asynccontextmanager
async def lifespan(kind: WorkerKind, config_path: Path | None):
    """The process's dependencies, set up for the tasks of ``kind``."""
    task_names = [name for name, k in TASK_KINDS.items() if k is kind]
    torn_down = []
    try:
        for name, setup, teardown in deps.DEPENDENCIES:
            if name in _NOT_NEEDED:
                continue
            result = setup(config_path=config_path, task_names=task_names)
            if inspect.isawaitable(result):
                await result
            if teardown is not None:
                torn_down.append(teardown)
        yield
    finally:
        for teardown in reversed(torn_down):
            result = teardown(None, None, None)
            if inspect.isawaitable(result):
                await result


async def run(kind: WorkerKind, config_path: Path | None) -> None:
    async with lifespan(kind, config_path):
        client = await connect(deps.lifespan_config())
        if kind is WorkerKind.FANOUT:  # it runs the vectorization workflow
            await check_search_attributes(client)
        worker = Worker(
            client,
            task_queue=kind.group,
            workflows=WORKFLOWS[kind],
            activities=ACTIVITIES[kind],
            max_concurrent_activities=MAX_ACTIVITIES[kind],
            graceful_shutdown_timeout=SHUTDOWN_GRACE,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with worker:
            logger.info("%s worker polling task queue %s", kind.value, kind.group)
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
