"""Temporal, the engine of Datashare 20 and later.

Each worker process is a ``python -m ml_worker.temporal KIND`` polling its kind's
queues (``queues.polled_queues``); tasks are workflows, submitted and followed on
the Temporal server (``ML_WORKER_TEMPORAL_ADDRESS``), which also tells who polls
which queue.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ml_worker.config import MLWorkerConfig
from ml_worker.constants import WorkerKind
from ml_worker.engine import Check, QueueStatus, TaskEngine
from ml_worker.exceptions import first_line
from ml_worker.task_client import TaskClient
from ml_worker.temporal.queues import activity_queue, polled_queues

if TYPE_CHECKING:
    from temporalio.client import Client


class TemporalEngine(TaskEngine):
    def task_client(self) -> TaskClient:
        from ml_worker.temporal.task_client import TemporalTaskClient

        return TemporalTaskClient(self.config)

    def check_worker_settings(self, config_path: Path | None) -> None:
        if config_path is not None:
            MLWorkerConfig.from_file(config_path)

    def worker_command(self, kind: WorkerKind, config_path: Path | None) -> list[str]:
        cmd = [sys.executable, "-m", "ml_worker.temporal", kind.value]
        if config_path is not None:
            cmd += ["-c", str(config_path)]
        return cmd

    async def check(self) -> list[Check]:
        from ml_worker.temporal.connection import check_search_attributes, connect

        config = self.config
        where = f"{config.temporal_address}, namespace {config.temporal_namespace}"
        try:
            await check_search_attributes(await connect(config))
        except Exception as e:  # noqa: BLE001  # reported, whatever it is
            return [Check("Temporal", where, False, first_line(e))]
        return [Check("Temporal", where, True, "answers")]

    async def queues(self) -> list[QueueStatus] | None:
        from ml_worker.temporal.connection import connect

        try:
            client = await connect(self.config)
            return [
                QueueStatus(kind, polled_queues(kind), await _workers(client, kind))
                for kind in WorkerKind
            ]
        except Exception:  # noqa: BLE001  # the server does not tell now
            return None

    async def workers(self, kind: WorkerKind) -> int | None:
        from ml_worker.temporal.connection import connect

        try:
            return await _workers(await connect(self.config), kind)
        except Exception:  # noqa: BLE001  # the server does not tell now
            return None


async def _workers(client: Client, kind: WorkerKind) -> int:
    """The workers polling the kind's activity queue, which every worker of the
    kind polls once its model is loaded."""
    from ml_worker.temporal.connection import pollers

    return len(await pollers(client, activity_queue(kind), activities=True))
