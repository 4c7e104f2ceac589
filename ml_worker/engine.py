"""The interface of a task engine.

An engine carries the tasks from whoever submits them to the worker processes:
icij-worker over RabbitMQ (``ml_worker.icij``, Datashare before 20) or Temporal
(``ml_worker.temporal``, Datashare 20 and later). Both run the same tasks
(``ml_worker.tasks``); what differs is behind this interface: how a worker process
is started, how a task is submitted and followed, and how the engine's services
and queues are checked. ``ml_worker.engines.engine_for`` picks one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ml_worker.config import MLWorkerConfig
from ml_worker.constants import WorkerKind
from ml_worker.task_client import TaskClient


@dataclass(frozen=True)
class Check:
    """Whether a service answers: what ``ml-worker status`` shows of it."""

    service: str
    where: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class QueueStatus:
    """A kind of worker's task queue(s): the workers taking its tasks, and the tasks
    waiting and running, where the engine tells (None where it does not)."""

    kind: WorkerKind
    queues: tuple[str, ...]
    workers: int | None
    waiting: int | None = None
    running: int | None = None


class TaskEngine(ABC):
    """One engine, for one configuration."""

    def __init__(self, config: MLWorkerConfig):
        self.config = config

    @abstractmethod
    def task_client(self) -> TaskClient:
        """A client that submits, follows and cancels tasks as Datashare does."""

    @abstractmethod
    def check_worker_settings(self, config_path: Path | None) -> None:
        """Fail now on settings every worker would fail on, rather than have the
        pool restart them for ever."""

    @abstractmethod
    def worker_command(self, kind: WorkerKind, config_path: Path | None) -> list[str]:
        """The command of one worker process of ``kind`` (the pool runs it);
        ``config_path``: the engine's settings file given to ``workers start``."""

    def worker_environment(self) -> dict[str, str]:
        """Variables the worker processes need beside the pool's own."""
        return {}

    @abstractmethod
    async def check(self) -> list[Check]:
        """The engine's own services (the broker, the task service, the server)."""

    @abstractmethod
    async def queues(self) -> list[QueueStatus] | None:
        """Each kind of worker's queues; None when the engine does not tell now."""

    @abstractmethod
    async def workers(self, kind: WorkerKind) -> int | None:
        """How many workers of ``kind`` take tasks now; None when unknown."""
