"""Datashare's task API, prefix ``/api/task``: the same whatever engine Datashare
runs its tasks on. A client of it creates tasks as Datashare's own interface does.

What Datashare 21's task route takes and answers (datashare-app ``TaskResource``,
datashare-tasks ``Task``, checked with its own classes):

- a task's body is ``{"@type": "Task", "id", "name", "state", "createdAt",
  "args"}``, its args typed as Jackson writes them (``ml_worker.jackson``): the route
  refuses an untyped list, object or ``user``, and its task repository fails on a
  task without a state or a creation date;
- the task's ``user`` is the one in its args, never the session's: a task without
  one is shown to no one (``TaskFinder``: 403 on ``GET /api/task/{id}``, left out of
  the list), so the signed-in user (``GET /api/users/me``) goes in every task;
- a task naming a project carries it as ``defaultProject`` too: Datashare's stop
  route authorizes on it, and fails on a task without it;
- a task read back has its args typed the same way; a result is its value, a string
  as plain text: ml-worker's workflows return JSON text on Temporal (Datashare's
  task repository keeps no object or list), read back as the value it encodes.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

import httpx

from ml_worker.constants import DEFAULT_PROJECT
from ml_worker.http_transport import HTTPTransport
from ml_worker.jackson import typed_args, untyped
from ml_worker.task_client import TaskClient, new_task_id

if TYPE_CHECKING:
    from icij_worker import Task, TaskError
    from icij_worker.objects import ErrorEvent


class DatashareTaskClient(TaskClient):
    """Datashare's task API, prefix ``/api/task``.

    Datashare authenticates with an API key (``Authorization: bearer <key>``), a
    session cookie (``_ds_session_id`` unless renamed), or basic auth, depending on
    its ``--authFilter``. A task is created for the user those credentials sign in,
    unless its arguments name another ``user``.
    """

    CSRF_COOKIE = "_ds_csrf_token"
    CSRF_HEADER = "X-DS-CSRF-TOKEN"
    PAGE_SIZE = 500

    def __init__(
        self,
        base_url: str,
        *,
        auth: httpx.Auth | None = None,
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
        self._http = HTTPTransport(
            base_url, auth=auth, headers=headers, cookies=cookies
        )
        self._user: dict[str, Any] | None = None

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._http.__aexit__(*exc_info)

    async def check(self) -> None:
        await self._http.request("GET", "/api/task", params={"size": 1})

    async def create_task(
        self, name: str, args: dict[str, Any], *, group: str, task_id: str | None = None
    ) -> str:
        task_id = task_id or new_task_id(name)
        args = dict(args)
        if "user" not in args:
            args["user"] = await self.user()
        if "project" in args:
            args.setdefault(DEFAULT_PROJECT, args["project"])
        body = {
            "@type": "Task",
            "id": task_id,
            "name": name,
            "state": "CREATED",
            "createdAt": int(datetime.now(UTC).timestamp() * 1000),
            "args": typed_args(args),
        }
        res = await self._http.request(
            "PUT", f"/api/task/{task_id}", params={"group": group}, json=body
        )
        # 201 answers {"taskId": ...}; 200 (the task already existed) has no body.
        if res.status_code == 201 and res.content:
            return res.json().get("taskId", task_id)
        return task_id

    async def user(self) -> dict[str, Any]:
        """The signed-in user as Datashare's ``User`` (asked once): its grants are
        what ``User.isGranted`` counts, the projects of its details and those the
        session adds (every project, in Datashare's local mode)."""
        if self._user is None:
            me = (await self._http.request("GET", "/api/users/me")).json()
            self._user = user_from_session(me)
        return self._user

    async def get_task(self, task_id: str) -> Task:
        return task_from_datashare(await self._get_task_json(task_id))

    async def get_task_result(self, task_id: str, *, done: bool = False) -> Any | None:
        # Datashare answers 204 while there is no result: nothing to ask first.
        res = await self._http.request("GET", f"/api/task/{task_id}/result")
        if res.status_code == 204 or not res.content:
            return None
        # Datashare answers a string result as plain text, anything else as JSON;
        # ml-worker's tasks on Temporal return JSON text.
        if "json" not in res.headers.get("content-type", ""):
            try:
                return json.loads(res.text)
            except json.JSONDecodeError:
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
            page = (await self._http.request("GET", "/api/task", params=params)).json()
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
        await self._http.request("PUT", f"/api/task/stop/{task_id}")

    async def _get_task_json(self, task_id: str) -> dict:
        return (await self._http.request("GET", f"/api/task/{task_id}")).json()


def user_from_session(me: dict[str, Any]) -> dict[str, Any]:
    """Datashare's ``User`` of a session, from ``GET /api/users/me`` (the session's
    details, and the projects it may read)."""
    details = {k: v for k, v in me.items() if k != "projects"}
    apps = details.get("groups_by_applications")
    apps = dict(apps) if isinstance(apps, dict) else {}
    granted = apps.get("datashare")
    granted = list(granted) if isinstance(granted, list) else []
    for project in me.get("projects") or []:
        name = project.get("name") if isinstance(project, dict) else project
        if isinstance(name, str) and name not in granted:
            granted.append(name)
    apps["datashare"] = granted
    return {
        "id": details.get("uid"),
        "name": details.get("name"),
        "email": details.get("email"),
        "provider": details.get("provider") or "local",
        "details": {**details, "groups_by_applications": apps},
    }


def task_from_datashare(data: dict) -> Task:
    """icij-worker's view of a task as Datashare serializes it."""
    from icij_worker import Task, TaskState

    return Task(
        id=data["id"],
        name=data["name"],
        args=untyped(data.get("args") or {}),
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
