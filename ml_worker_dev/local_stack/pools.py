"""Worker pools as ``ml-worker workers start`` runs them, on either engine, and
the waits until their workers take tasks."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ml_worker.constants import WorkerKind
from ml_worker.pool import pool_kinds
from ml_worker_dev.local_stack.processes import (
    ServiceUnreachable,
    console_script,
    started,
)
from ml_worker_dev.local_stack.services import RabbitMQ, rabbitmq_settings


@contextmanager
def worker_pool(
    workdir: Path,
    *,
    n_workers: int,
    rabbitmq: RabbitMQ,
    vhost: str,
    ml_worker_config: dict,
    kind: WorkerKind | None = None,
    wrap: Callable[[list[str]], list[str]] | None = None,
    wait: bool = False,
):
    """The worker processes of ``ml-worker workers start -n n_workers [--kind
    kind]``, which restarts those that exit; the Popen's process group is the whole
    pool.

    ``wrap`` turns the pool's command into the one to run (e.g. inside a network
    namespace). ``wait``: yield once its workers consume their task queues
    (``wait_for_workers``); otherwise at once, while they start.
    """
    app_config_path = workdir / "ml-worker.json"
    app_config_path.write_text(json.dumps(ml_worker_config, indent=2))
    worker_config = {
        "type": "amqp",
        "app_bootstrap_config_path": str(app_config_path),
        **rabbitmq_settings(rabbitmq, vhost),
    }
    config_path = workdir / "workers.json"
    config_path.write_text(json.dumps(worker_config, indent=2))
    cmd = [
        console_script("ml-worker"),
        "workers",
        "start",
        "-n",
        str(n_workers),
        "-c",
        str(config_path),
    ]
    if kind is not None:
        cmd += ["--kind", kind]
    env = {"ICIJ_WORKER_TYPE": "amqp", "HF_HUB_OFFLINE": "1"}
    if wrap is not None:
        cmd = wrap(cmd)
    log = workdir / "workers.log"
    with started(cmd, log, env=env) as process:
        if wait:
            wait_for_workers(rabbitmq, vhost, n_workers, process, kind=kind, log=log)
        yield process


def wait_for_workers(
    rabbitmq: RabbitMQ,
    vhost: str,
    n_workers: int,
    pool: subprocess.Popen,
    *,
    kind: WorkerKind | None = None,
    log: Path,
    timeout_s: float = 300.0,
) -> None:
    """Until the workers of a ``worker_pool(n_workers, kind)`` consume their task
    queues."""
    expected = Counter(k.group for k in pool_kinds(n_workers, kind))

    def ready() -> bool:
        return all(
            (rabbitmq.task_queue_consumers(vhost, group) or 0) >= n
            for group, n in expected.items()
        )

    _wait_for_pool(ready, pool, log=log, timeout_s=timeout_s)


@contextmanager
def temporal_worker_pool(
    workdir: Path,
    *,
    n_workers: int,
    ml_worker_config: dict,
    kind: WorkerKind | None = None,
):
    """The Temporal worker processes of ``ml-worker workers start -n n_workers
    [--kind kind]``; ``ml_worker_config`` holds the Temporal server's address."""
    config_path = workdir / "ml-worker-temporal.json"
    config_path.write_text(json.dumps(ml_worker_config, indent=2))
    cmd = [console_script("ml-worker"), "workers", "start", "-n", str(n_workers)]
    cmd += ["-c", str(config_path)]
    if kind is not None:
        cmd += ["--kind", kind]
    env = {"ML_WORKER_ENGINE": "temporal", "HF_HUB_OFFLINE": "1"}
    with started(cmd, workdir / "workers.log", env=env) as process:
        yield process


def wait_for_temporal_workers(
    address: str,
    n_workers: int,
    pool: subprocess.Popen,
    *,
    kind: WorkerKind | None = None,
    log: Path,
    timeout_s: float = 300.0,
) -> None:
    """Until the workers of a ``temporal_worker_pool(n_workers, kind)`` poll their
    task queues for activities (a worker polls once its model is loaded)."""
    import asyncio

    from ml_worker.config import MLWorkerConfig
    from ml_worker.temporal.connection import connect, pollers
    from ml_worker.temporal.queues import activity_queue

    expected = Counter(activity_queue(k) for k in pool_kinds(n_workers, kind))

    async def ready() -> bool:
        client = await connect(MLWorkerConfig(temporal_address=address))
        for queue, n in expected.items():
            if len(await pollers(client, queue, activities=True)) < n:
                return False
        return True

    _wait_for_pool(lambda: asyncio.run(ready()), pool, log=log, timeout_s=timeout_s)


def _wait_for_pool(
    ready: Callable[[], bool], pool: subprocess.Popen, *, log: Path, timeout_s: float
) -> None:
    """Until ``ready()``; ServiceUnreachable if the pool exits or takes longer."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if pool.poll() is not None:
            raise ServiceUnreachable(f"the workers exited at start-up: see {log}")
        if time.monotonic() > deadline:
            raise ServiceUnreachable(
                f"workers not ready after {timeout_s:.0f}s: see {log}"
            )
        time.sleep(0.5)
