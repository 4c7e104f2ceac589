"""Datashare's part between its task API and the workers, for the tests that go
through its API double (the plugin's, the Datashare end-to-end test).

Datashare queues a task it is given on the workers' broker and learns its state,
progress, result and error from the workers' events. Here the task-API double
hands each created task, its arguments as the double stored them (the signed-in
user and its grants included), to icij-worker's real task service, which queues
it on RabbitMQ for the session's real workers; before the double answers a task
(alone, its result, or in the task list), the bridge reads that task back from the
service into Datashare's shape. Every task the plugin creates is the workers'.

``reported``: the states and progresses read back for each task, in order, as
Datashare's answers then gave them to the page.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx
from icij_worker import TaskState

from ml_worker.icij.task_client import ICIJTaskClient
from tests.datashare_double import DatashareDouble

_FINAL = {"DONE", "ERROR", "CANCELLED"}


@dataclass
class TaskBridge:
    datashare: DatashareDouble
    service_url: str
    reported: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.datashare.on_create = self.on_create
        self.datashare.on_read = self.on_read

    def on_create(self, task: dict, group: str | None) -> None:
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
        answered = self.datashare.tasks[task_id]
        self.reported.setdefault(task_id, []).append(
            (answered["state"], answered["progress"])
        )
