"""icij-worker's HTTP task service (``icij-http-server``), prefix ``/api/tasks``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import httpx

from ml_worker.exceptions import TaskServiceUnavailable, UnknownTask
from ml_worker.http_transport import HTTPTransport
from ml_worker.task_client import TaskClient, new_task_id

if TYPE_CHECKING:
    from icij_worker import Task
    from icij_worker.objects import ErrorEvent


class ICIJTaskClient(TaskClient):
    """icij-worker's HTTP task service (``icij-http-server``), prefix ``/api/tasks``.

    The service routes a task to its group from the app's registry, so ``group``
    needs no sending.
    """

    def __init__(self, base_url: str, *, auth: httpx.Auth | None = None):
        self._http = HTTPTransport(base_url, auth=auth)

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.__aexit__(*exc_info)

    async def check(self) -> None:
        # 503 when the service's broker or task storage is down.
        await self._http.request("GET", "/health")

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        await self._http.request(
            "PUT", f"/api/tasks/{task_id}", json={"name": name, "args": args}
        )
        return task_id

    async def get_task(self, task_id: str) -> Task:
        try:
            res = await self._http.request("GET", f"/api/tasks/{task_id}")
        except TaskServiceUnavailable:
            # icij-worker 0.19.5's service answers an unknown id with a 500 (its 404
            # handler fails): tell that apart from a real failure by the task list.
            if all(t.id != task_id for t in await self.get_tasks()):
                raise UnknownTask(
                    f"unknown task {task_id} at {self._http.base_url}"
                ) from None
            raise
        from icij_worker import Task

        return Task.model_validate(res.json())

    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        from icij_worker import TaskState

        # The service fails (500) when asked for a result that does not exist yet.
        if not done and (await self.get_task(task_id)).state is not TaskState.DONE:
            return None
        res = await self._http.request("GET", f"/api/tasks/{task_id}/result")
        result = res.json()
        return result.get("value") if isinstance(result, dict) else result

    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]:
        from icij_worker.objects import ErrorEvent

        res = await self._http.request("GET", f"/api/tasks/{task_id}/errors")
        return [ErrorEvent.model_validate(e) for e in res.json()]

    async def get_tasks(self, name: str | None = None) -> list[Task]:
        # A query, sent as a POST.
        res = await self._http.request(
            "POST", "/api/tasks", idempotent=True, json={"name": name}
        )
        from icij_worker import Task

        tasks = [Task.model_validate(t) for t in res.json()]
        # The service ignores the name it is given.
        return [t for t in tasks if name is None or t.name == name]

    async def cancel_task(self, task_id: str) -> None:
        await self.get_task(task_id)  # the service answers 204 for any id
        await self._http.request("POST", f"/api/tasks/{task_id}/cancel")
