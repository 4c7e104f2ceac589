"""Clients of the task APIs that create and follow tasks.

``create_vectorization_tasks`` fans its work out by creating child tasks through a
task API: icij-worker's HTTP task service, or Datashare's own. Both clients share one
interface, and both turn HTTP failures into errors that say what happened and where.
"""

from __future__ import annotations

import secrets
import uuid
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx

from ml_worker.exceptions import (
    TaskServiceAuthError,
    TaskServiceError,
    TaskServiceUnavailable,
    UnknownTask,
)

# icij-worker's task objects are imported where a task is read: its import took
# 0.9 s, and `ml-worker status` only asks whether the service answers.
if TYPE_CHECKING:
    from icij_worker import Task, TaskError
    from icij_worker.objects import ErrorEvent


def new_task_id(name: str) -> str:
    return f"{name}-{uuid.uuid4()}"


class TaskClient(ABC):
    """A task API, used as an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        auth=None,
        headers: dict | None = None,
        cookies: dict | None = None,
    ):
        self._base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            auth=auth,
            headers=headers,
            cookies=cookies,
            timeout=30.0,
        )

    async def __aenter__(self) -> TaskClient:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info):
        await self._http.__aexit__(*exc_info)

    @abstractmethod
    async def check(self) -> None:
        """Raises a TaskServiceError (unreachable, credentials refused, failing)
        unless the task API answers. Reads no task: cheap however many there are."""

    @abstractmethod
    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        """Create (and queue) a task; returns its id. Creating it twice is a no-op."""

    @abstractmethod
    async def get_task(self, task_id: str) -> Task: ...

    @abstractmethod
    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        """The task's result, None while it has none. ``done``: the caller saw the
        task done, so its state need not be asked again."""

    @abstractmethod
    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]: ...

    @abstractmethod
    async def get_tasks(self, name: str | None = None) -> list[Task]: ...

    @abstractmethod
    async def cancel_task(self, task_id: str) -> None: ...

    async def _request(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs
    ) -> httpx.Response:
        """``idempotent``: the request only reads, as every GET does, so it may be
        sent again."""
        url = f"{self._base_url}{path}"
        idempotent = idempotent or method == "GET"
        try:
            res = await self._send(method, path, idempotent, **kwargs)
        except httpx.TransportError as e:
            msg = f"task service unreachable at {url}: {e.__class__.__name__} {e}"
            raise TaskServiceUnavailable(msg) from e
        status = f"{res.status_code} {res.reason_phrase}".strip()
        if res.status_code in (401, 403):
            what = (
                "rejected the credentials"
                if res.status_code == 401
                else "denied access"
            )
            msg = f"task service {what} ({status}) for {method} {url}{_body(res)}"
            raise TaskServiceAuthError(msg)
        if res.status_code == 404:
            raise UnknownTask(f"not found ({status}): {method} {url}")
        if res.status_code >= 500:
            msg = f"task service failed ({status}) on {method} {url}{_body(res)}"
            raise TaskServiceUnavailable(msg)
        if res.status_code >= 400:
            msg = f"task service refused {method} {url} ({status}){_body(res)}"
            raise TaskServiceError(msg)
        return res

    async def _send(
        self, method: str, path: str, idempotent: bool, **kwargs
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            if not idempotent:
                raise
            # The server dropped the connection, often a kept-alive one it had just
            # closed (icij-worker's service closes it after each 500): a read is safe
            # to send once more, on a new connection.
            return await self._http.request(method, path, **kwargs)


def _body(res: httpx.Response) -> str:
    text = res.text.strip()[:500]
    return f": {text}" if text else ""


class ICIJTaskClient(TaskClient):
    """icij-worker's HTTP task service (``icij-http-server``), prefix ``/api/tasks``.

    The service routes a task to its group from the app's registry, so ``group``
    needs no sending.
    """

    async def check(self) -> None:
        # 503 when the service's broker or task storage is down.
        await self._request("GET", "/health")

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        await self._request(
            "PUT", f"/api/tasks/{task_id}", json={"name": name, "args": args}
        )
        return task_id

    async def get_task(self, task_id: str) -> Task:
        try:
            res = await self._request("GET", f"/api/tasks/{task_id}")
        except TaskServiceUnavailable:
            # icij-worker 0.19.5's service answers an unknown id with a 500 (its 404
            # handler fails): tell that apart from a real failure by the task list.
            if all(t.id != task_id for t in await self.get_tasks()):
                raise UnknownTask(
                    f"unknown task {task_id} at {self._base_url}"
                ) from None
            raise
        from icij_worker import Task

        return Task.model_validate(res.json())

    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        from icij_worker import TaskState

        # The service fails (500) when asked for a result that does not exist yet.
        if not done and (await self.get_task(task_id)).state is not TaskState.DONE:
            return None
        res = await self._request("GET", f"/api/tasks/{task_id}/result")
        result = res.json()
        return result.get("value") if isinstance(result, dict) else result

    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]:
        from icij_worker.objects import ErrorEvent

        res = await self._request("GET", f"/api/tasks/{task_id}/errors")
        return [ErrorEvent.model_validate(e) for e in res.json()]

    async def get_tasks(self, name: str | None = None) -> list[Task]:
        # A query, sent as a POST.
        res = await self._request(
            "POST", "/api/tasks", idempotent=True, json={"name": name}
        )
        from icij_worker import Task

        tasks = [Task.model_validate(t) for t in res.json()]
        # The service ignores the name it is given.
        return [t for t in tasks if name is None or t.name == name]

    async def cancel_task(self, task_id: str) -> None:
        await self.get_task(task_id)  # the service answers 204 for any id
        await self._request("POST", f"/api/tasks/{task_id}/cancel")


class DatashareTaskClient(TaskClient):
    """Datashare's task API, prefix ``/api/task``.

    Datashare authenticates with an API key (``Authorization: bearer <key>``), a
    session cookie (``_ds_session_id`` unless renamed), or basic auth, depending on
    its ``--authFilter``. It adds the submitting ``user`` to every task's arguments.
    """

    CSRF_COOKIE = "_ds_csrf_token"
    CSRF_HEADER = "X-DS-CSRF-TOKEN"
    PAGE_SIZE = 500

    def __init__(
        self,
        base_url: str,
        *,
        auth=None,
        api_key: str | None = None,
        session_cookie: str | None = None,
        cookie_name: str = "_ds_session_id",
    ):
        if api_key and auth is not None:
            msg = "give Datashare either an API key or basic-auth credentials, not both"
            raise ValueError(msg)
        # Datashare refuses a PUT made with a session cookie unless a CSRF cookie and
        # header match: any value of our own does.
        csrf = secrets.token_hex(16)
        headers = {self.CSRF_HEADER: csrf}
        cookies = {self.CSRF_COOKIE: csrf}
        if api_key:
            headers["Authorization"] = f"bearer {api_key}"
        if session_cookie:
            cookies[cookie_name] = session_cookie
        super().__init__(base_url, auth=auth, headers=headers, cookies=cookies)

    async def check(self) -> None:
        await self._request("GET", "/api/task", params={"size": 1})

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        body = {"@type": "Task", "id": task_id, "name": name, "args": args}
        res = await self._request(
            "PUT", f"/api/task/{task_id}", params={"group": group}, json=body
        )
        # 201 answers {"taskId": ...}; 200 (the task already existed) has no body.
        if res.status_code == 201 and res.content:
            return res.json().get("taskId", task_id)
        return task_id

    async def get_task(self, task_id: str) -> Task:
        return task_from_datashare(await self._get_task_json(task_id))

    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        # Datashare answers 204 while there is no result: nothing to ask first.
        res = await self._request("GET", f"/api/task/{task_id}/result")
        if res.status_code == 204 or not res.content:
            return None
        # Datashare answers a string result as plain text, anything else as JSON.
        if "json" not in res.headers.get("content-type", ""):
            return res.text
        result = res.json()
        if isinstance(result, dict) and result.get("@type") == "TaskResult":
            return result.get("value")
        return result

    async def get_task_errors(self, task_id: str) -> list[ErrorEvent]:
        from icij_worker.objects import ErrorEvent

        data = await self._get_task_json(task_id)
        if not data.get("error"):
            return []
        task = task_from_datashare(data)
        event = ErrorEvent(
            task_id=task.id,
            error=_error_from_datashare(data["error"]),
            retries_left=task.retries_left or 0,
            created_at=task.completed_at or task.created_at,
        )
        return [event]

    async def get_tasks(self, name: str | None = None) -> list[Task]:
        tasks: list[Task] = []
        params: dict[str, Any] = {"size": self.PAGE_SIZE}
        if name is not None:
            params["name"] = name
        while True:
            params["from"] = len(tasks)
            page = (await self._request("GET", "/api/task", params=params)).json()
            if isinstance(page, list):  # a plain, unpaginated list
                tasks.extend(task_from_datashare(t) for t in page)
                break
            items = page.get("items") or []
            tasks.extend(task_from_datashare(t) for t in items)
            total = (page.get("pagination") or {}).get("total")
            if not items or (total is not None and len(tasks) >= total):
                break
        # Datashare's name filter matches substrings.
        return [t for t in tasks if name is None or t.name == name]

    async def cancel_task(self, task_id: str) -> None:
        await self._request("PUT", f"/api/task/stop/{task_id}")

    async def _get_task_json(self, task_id: str) -> dict:
        return (await self._request("GET", f"/api/task/{task_id}")).json()


def task_from_datashare(data: dict) -> Task:
    """icij-worker's view of a task as Datashare serializes it."""
    from icij_worker import Task, TaskState

    # Jackson writes the Java type of the argument map as an "@type" entry.
    args = {k: v for k, v in (data.get("args") or {}).items() if k != "@type"}
    return Task(
        id=data["id"],
        name=data["name"],
        args=args,
        state=TaskState(data["state"]),
        progress=data.get("progress"),
        created_at=_datetime(data["createdAt"]),
        completed_at=_datetime(data.get("completedAt")),
        retries_left=data.get("retriesLeft"),
        max_retries=data.get("maxRetries"),
    )


def _datetime(value: int | float | str | None) -> datetime | None:
    """Datashare's dates: epoch milliseconds, or ISO 8601 text."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return datetime.fromisoformat(value)


def _error_from_datashare(error: dict) -> TaskError:
    from icij_worker import TaskError

    # Java leaves out what it does not know, such as a native method's file.
    stacktrace = [
        {
            "name": item.get("name") or "",
            "file": item.get("file") or "",
            "lineno": item.get("lineno", -1),
        }
        for item in error.get("stacktrace") or []
    ]
    return TaskError(
        name=error.get("name") or "Error",
        message=error.get("message") or "",
        cause=error.get("cause"),
        stacktrace=stacktrace,
    )
