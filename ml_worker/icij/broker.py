"""RabbitMQ as the CLI sees it: is it up, and who consumes which task queue.

Its management API (the ``rabbitmq_management`` plugin, which icij-worker needs too)
tells each queue's consumers and waiting tasks.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ml_worker.exceptions import BrokerUnreachable

# icij-worker's task queue, suffixed ".<group>" for a task group's (its
# RoutingStrategy.amqp_task_routing; tests/test_broker.py checks they agree).
_TASK_QUEUE = "TASK"


class RabbitMQSettings(BaseSettings):
    """The RabbitMQ settings of icij-worker's AMQP workers (``ICIJ_WORKER_RABBITMQ_*``):
    the same names and defaults as its ``AMQPWorkerConfig`` (tests/test_broker.py
    checks they agree), read without importing icij-worker, which took 0.9 s of
    ``ml-worker status``'s start-up."""

    # Other ICIJ_WORKER_* variables are icij-worker's own business.
    model_config = SettingsConfigDict(
        env_prefix="ICIJ_WORKER_", extra="ignore", frozen=True
    )

    rabbitmq_host: str = "127.0.0.1"
    rabbitmq_port: int = 5672
    rabbitmq_management_port: int = 15672
    rabbitmq_user: str = "guest"
    rabbitmq_password: SecretStr = SecretStr("guest")
    # URL-encoded, as the management API takes it: "%2F" is "/".
    rabbitmq_vhost: str = "%2F"

    def broker(self) -> RabbitMQ:
        return RabbitMQ(
            host=self.rabbitmq_host,
            port=self.rabbitmq_port,
            management_port=self.rabbitmq_management_port,
            user=self.rabbitmq_user,
            password=self.rabbitmq_password.get_secret_value(),
        )


@dataclass(frozen=True)
class QueueStats:
    """A task queue: workers consuming it, tasks waiting, tasks being run."""

    queue: str
    consumers: int
    waiting: int
    running: int


@dataclass(frozen=True)
class RabbitMQ:
    host: str = "127.0.0.1"
    port: int = 5672
    management_port: int = 15672
    user: str = "guest"
    password: str = "guest"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    def check(self) -> None:
        """Raises BrokerUnreachable, saying how to fix it, unless RabbitMQ and its
        management API both accept connections."""
        start = (
            "start it with `rabbitmq-server -detached`, or `./ml-worker up -d rabbitmq`"
        )
        if not port_open(self.host, self.port):
            msg = f"RabbitMQ is not reachable at {self.host}:{self.port}: {start}"
            raise BrokerUnreachable(msg)
        if not port_open(self.host, self.management_port):
            msg = (
                f"RabbitMQ's management API is not reachable at {self.management_url}:"
                " enable it with `rabbitmq-plugins enable rabbitmq_management`"
            )
            raise BrokerUnreachable(msg)

    def task_queue(self, vhost: str, group: str, *, quoted: bool = False) -> QueueStats:
        """``group``'s task queue in ``vhost``; all zeros until a worker declared it.

        The counts lag: RabbitMQ showed a pool's old consumer count for 35 s here
        after the pool was replaced. ``quoted``: ``vhost`` is URL-encoded already, as
        icij-worker's ``rabbitmq_vhost`` setting is (``%2F`` for ``/``). Raises
        httpx.HTTPError when the management API does not tell.
        """
        stats = self._queue(vhost, group, quoted) or {}
        return QueueStats(
            task_queue_name(group),
            consumers=stats.get("consumers") or 0,
            waiting=stats.get("messages_ready") or 0,
            running=stats.get("messages_unacknowledged") or 0,
        )

    def task_queue_consumers(
        self, vhost: str, group: str, *, quoted: bool = False
    ) -> int | None:
        """How many workers consume ``group``'s task queue in ``vhost``: 0 until one
        declared it, None while RabbitMQ has no statistics of the queue (for a few
        seconds at times: measured 2.75 s after its creation)."""
        stats = self._queue(vhost, group, quoted)
        return 0 if stats is None else stats.get("consumers")

    def _queue(self, vhost: str, group: str, quoted: bool) -> dict | None:
        """The management API's view of the queue; None when it does not exist."""
        vhost = vhost if quoted else quote(vhost, safe="")
        queue = quote(task_queue_name(group), safe="")
        res = httpx.get(
            f"{self.management_url}/api/queues/{vhost}/{queue}",
            auth=(self.user, self.password),
            timeout=5,
        )
        if res.status_code == 404:
            return None
        res.raise_for_status()
        return res.json()


def task_queue_name(group: str) -> str:
    """The RabbitMQ queue of a task group's tasks."""
    return f"{_TASK_QUEUE}.{group}"


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False
