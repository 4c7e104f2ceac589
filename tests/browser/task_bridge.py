"""Datashare's part between its task API and the workers, for the browser tests.

Datashare queues a task it is given on the workers' broker and learns its state,
progress, result and error from the workers' events. Here the task-API double
hands each created task to icij-worker's real task service (which queues it on
RabbitMQ for the real workers) and, before it answers a task, reads that task back
from the service into Datashare's shape.

Tasks the workers do not run yet are answered by a stand-in (``stand_ins``: task
name to a function of the task's arguments returning its result, or raising
``StandInError`` for its error), through ``DatashareDouble.complete`` / ``fail``,
as the workers' result would come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from icij_worker import TaskState

from ml_worker.icij.task_client import ICIJTaskClient
from tests.datashare_double import DatashareDouble

_FINAL = {"DONE", "ERROR", "CANCELLED"}

StandIn = Callable[[dict], Any]


class StandInError(Exception):
    """A stand-in's task error: ``name`` is the error's class, as a worker's."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name
        self.message = message


@dataclass
class TaskBridge:
    datashare: DatashareDouble
    service_url: str
    stand_ins: dict[str, StandIn] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.datashare.on_create = self.on_create
        self.datashare.on_read = self.on_read

    def on_create(self, task: dict, group: str | None) -> None:
        stand_in = self.stand_ins.get(task["name"])
        if stand_in is not None:
            try:
                value = stand_in(task["args"])
            except StandInError as e:
                self.datashare.fail(task["id"], e.name, e.message)
            else:
                self.datashare.complete(task["id"], value)
            return
        body = {"name": task["name"], "args": task["args"]}
        url = f"{self.service_url}/api/tasks/{task['id']}"
        httpx.put(url, json=body, timeout=10.0).raise_for_status()

    def on_read(self, task_id: str) -> None:
        if self.datashare.tasks[task_id]["state"] in _FINAL:
            return
        asyncio.run(self._refresh(task_id))

    async def _refresh(self, task_id: str) -> None:
        async with ICIJTaskClient(self.service_url) as service:
            task = await service.get_task(task_id)
            if task.state is TaskState.DONE:
                value = await service.get_task_result(task_id, done=True)
                self.datashare.complete(task_id, value)
            elif task.state is TaskState.ERROR:
                error = (await service.get_task_errors(task_id))[-1].error
                self.datashare.fail(task_id, error.name, error.message)
            else:
                self.datashare.report(task_id, task.state.value, task.progress or 0.0)
