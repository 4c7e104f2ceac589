"""Clients of the task APIs that create and follow tasks.

``create_vectorization_tasks`` fans its work out by creating child tasks through a
task API: icij-worker's HTTP task service, or Datashare's own. Both clients share one
interface, and both turn HTTP failures into errors that say what happened and where.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from typing import Any

import httpx
from icij_worker import Task, TaskState
from icij_worker.objects import ErrorEvent


class TaskServiceError(RuntimeError):
    """The task API answered with an error, or could not be reached."""


class TaskServiceUnavailable(TaskServiceError):
    pass


class TaskServiceAuthError(TaskServiceError):
    pass


class UnknownTask(TaskServiceError, LookupError):
    pass


def new_task_id(name: str) -> str:
    return f"{name}-{uuid.uuid4()}"


class TaskClient(ABC):
    """A task API, used as an async context manager."""

    def __init__(self, base_url: str, *, auth=None, headers: dict | None = None):
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url, auth=auth, headers=headers, timeout=30.0
        )

    async def __aenter__(self) -> TaskClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info):
        await self._http.__aexit__(*exc_info)

    @abstractmethod
    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        """Create (and queue) a task; returns its id. Creating it twice is a no-op."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task: ...

    @abstractmethod
    async def get_task_result(self, task_id: str) -> Any | None:
        """The task's result, None while it has none."""

    @abstractmethod
    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]: ...

    @abstractmethod
    async def get_tasks(self, name: str | None = None) -> list[Task]: ...

    @abstractmethod
    async def cancel_task(self, task_id: str) -> None: ...

    async def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        url = f"{self._base_url}{path}"
        try:
            res = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            msg = f"task service unreachable at {url}: {e.__class__.__name__} {e}"
            raise TaskServiceUnavailable(msg) from e
        if res.status_code in (401, 403):
            what = "rejected the credentials" if res.status_code == 401 else "denied access"
            msg = f"task service {what} ({res.status_code}) for {method} {url}"
            raise TaskServiceAuthError(msg)
        if res.status_code == 404:
            raise UnknownTask(f"not found (404): {method} {url}")
        if res.status_code >= 500:
            msg = f"task service failed ({res.status_code}) on {method} {url}: {res.text[:500]}"
            raise TaskServiceUnavailable(msg)
        if res.status_code >= 400:
            msg = f"task service refused {method} {url} ({res.status_code}): {res.text[:500]}"
            raise TaskServiceError(msg)
        return res


class ICIJTaskClient(TaskClient):
    """icij-worker's HTTP task service (``icij-http-server``), prefix ``/api/tasks``.

    The service routes a task to its group from the app's registry, so ``group``
    needs no sending.
    """

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        await self._request(
            "PUT", f"/api/tasks/{task_id}", json={"name": name, "args": args}
        )
        return task_id

    async def get_task(self, task_id: str) -> Task:
        res = await self._request("GET", f"/api/tasks/{task_id}")
        return Task.model_validate(res.json())

    async def get_task_result(self, task_id: str) -> Any | None:
        # The service fails (500) when asked for a result that does not exist yet.
        if (await self.get_task(task_id)).state is not TaskState.DONE:
            return None
        res = await self._request("GET", f"/api/tasks/{task_id}/result")
        result = res.json()
        return result.get("value") if isinstance(result, dict) else result

    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]:
        res = await self._request("GET", f"/api/tasks/{task_id}/errors")
        return [ErrorEvent.model_validate(e) for e in res.json()]

    async def get_tasks(self, name: str | None = None) -> list[Task]:
        res = await self._request("POST", "/api/tasks", json={"name": name})
        return [Task.model_validate(t) for t in res.json()]

    async def cancel_task(self, task_id: str) -> None:
        await self._request("POST", f"/api/tasks/{task_id}/cancel")
