"""icij-worker over RabbitMQ, the engine of Datashare before 20.

Each worker process is icij-worker's own (``icij-worker workers start`` with one
worker, consuming its kind's group queue ``TASK.<group>``); tasks are submitted and
followed through icij-worker's HTTP task service or Datashare's task API
(``ML_WORKER_TASK_SERVICE``); RabbitMQ's management API tells who consumes which
queue.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
from pydantic import SecretStr, ValidationError

from ml_worker.config import MLWorkerConfig, TaskServiceKind
from ml_worker.constants import WorkerKind
from ml_worker.engine import Check, QueueStatus, TaskEngine
from ml_worker.exceptions import BrokerUnreachable, first_line
from ml_worker.icij.broker import RabbitMQSettings
from ml_worker.task_client import TaskClient

# The icij-worker app the workers run and the task service routes with.
APP_PATH = "ml_worker.icij.app.app"


class ICIJEngine(TaskEngine):
    """``rabbitmq``: the broker as the workers reach it; unset, as
    ``ICIJ_WORKER_RABBITMQ_*`` name it."""

    def __init__(
        self, config: MLWorkerConfig, rabbitmq: RabbitMQSettings | None = None
    ):
        super().__init__(config)
        self._rabbitmq = rabbitmq

    def task_client(self) -> TaskClient:
        return task_client_from(self.config)

    def check_worker_settings(self, config_path: Path | None) -> None:
        from icij_worker import WorkerConfig

        if config_path is not None:
            worker_config = WorkerConfig.model_validate_json(config_path.read_text())
        else:
            worker_config = WorkerConfig.from_env()
        app_config = worker_config.app_bootstrap_config_path
        if app_config is not None:
            MLWorkerConfig.from_file(app_config)

    def worker_command(self, kind: WorkerKind, config_path: Path | None) -> list[str]:
        cmd = [sys.executable, "-m", "icij_worker", "workers", "start", APP_PATH]
        cmd += ["-n", "1", "-g", kind.group]
        if config_path is not None:
            cmd += ["-c", str(config_path)]
        return cmd

    def worker_environment(self) -> dict[str, str]:
        # The workers' type, unless the environment says otherwise.
        return {"ICIJ_WORKER_TYPE": os.environ.get("ICIJ_WORKER_TYPE", "amqp")}

    async def check(self) -> list[Check]:
        return list(
            await asyncio.gather(
                asyncio.to_thread(_check_rabbitmq, self._rabbitmq), self._check_api()
            )
        )

    async def queues(self) -> list[QueueStatus] | None:
        try:
            settings = self._rabbitmq or RabbitMQSettings()
            rabbitmq = settings.broker()
            stats = {
                kind: await asyncio.to_thread(
                    rabbitmq.task_queue,
                    settings.rabbitmq_vhost,
                    kind.group,
                    quoted=True,
                )
                for kind in WorkerKind
            }
        except (ValidationError, httpx.HTTPError, ValueError):
            return None
        return [
            QueueStatus(kind, (s.queue,), s.consumers, s.waiting, s.running)
            for kind, s in stats.items()
        ]

    async def workers(self, kind: WorkerKind) -> int | None:
        try:
            settings = self._rabbitmq or RabbitMQSettings()
            return await asyncio.to_thread(
                settings.broker().task_queue_consumers,
                settings.rabbitmq_vhost,
                kind.group,
                quoted=True,
            )
        except (ValidationError, httpx.HTTPError, ValueError):
            return None

    async def _check_api(self) -> Check:
        config = self.config
        where = f"{config.task_service_url} ({config.task_service.value})"
        try:
            async with self.task_client() as client:
                await client.check()
        except Exception as e:  # noqa: BLE001  # reported, whatever it is
            return Check("task service", where, False, first_line(e))
        return Check("task service", where, True, "answers")


def task_client_from(config: MLWorkerConfig) -> TaskClient:
    """The client of the task API ``config`` names: icij-worker's task service or
    Datashare's."""
    from ml_worker.datashare_api import DatashareTaskClient
    from ml_worker.icij.task_client import ICIJTaskClient

    auth = None
    if config.task_service_user:
        auth = httpx.BasicAuth(
            config.task_service_user, _secret(config.task_service_password) or ""
        )
    if config.task_service is TaskServiceKind.ICIJ:
        return ICIJTaskClient(config.task_service_url, auth=auth)
    return DatashareTaskClient(
        config.task_service_url,
        auth=auth,
        api_key=_secret(config.task_service_api_key),
        session_cookie=_secret(config.task_service_cookie),
        cookie_name=config.task_service_cookie_name,
    )


def _check_rabbitmq(settings: RabbitMQSettings | None) -> Check:
    rabbitmq = (settings or RabbitMQSettings()).broker()
    where = f"{rabbitmq.host}:{rabbitmq.port}, management {rabbitmq.management_url}"
    try:
        rabbitmq.check()
    except BrokerUnreachable as e:
        return Check("RabbitMQ", where, False, str(e))
    return Check("RabbitMQ", where, True, "broker and management API answer")


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
