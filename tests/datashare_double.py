"""A contract double of Datashare's task API, for tests.

Datashare (a Java server) cannot run here, so this HTTP server answers as Datashare
21.18's task routes do, on what ml-worker uses, and nothing more. Written from
ICIJ/datashare at tag 21.18.0 (paths under ``datashare-app/src/main/java/org/icij/
datashare/`` unless said), the body rules checked with Datashare's own classes and
mappers (Jackson 2.22):

- ``PUT /api/task/{id}?group={group}`` (``web/TaskResource.createTask``): 400
  ``{"message": ...}`` when the body is not a task (``"@type": "Task"``) or its id
  differs from the URL's; 400 when an argument is not typed as Datashare's mapper
  requires (``Task.args`` is ``@JsonTypeInfo(use = CLASS)``, datashare-tasks
  ``asynctasks/Task.java``; datashare-api ``json/JsonObjectMapper.java``): a list
  not wrapped as ``["java.util.ArrayList", [...]]``, an object without ``"@type"``,
  a ``user`` that is not an ``org.icij.datashare.user.User``; 500 when it has no
  ``state`` or ``createdAt`` (the task repository dereferences both, datashare-db
  ``JooqTaskRepository.insertValues``); else 201 ``{"taskId": id}`` (state QUEUED),
  or 200 with no body when the task already existed. The task's user is its
  ``args.user``, as the body gives it (``Task.getUser``): the route adds none
  (Datashare's main branch, after 21.18, builds the task with the session's user
  instead, ``new Task<>(id, name, currentUser, args)``; a client that sends the
  signed-in user, as ml-worker's plugin does, reaches the workers with the same
  user and grants either way);
- ``GET /api/task/{id}``: the task as Datashare serializes it (camelCase fields,
  dates in epoch milliseconds, the args' values typed, their contents plain), 404
  when unknown, 403 when its user is not the signed-in one (``tasks/TaskFinder.
  findVisibleTaskFor``; ``User.equals`` compares ids, datashare-api
  ``user/User.java``), a task without a user included;
- ``GET /api/task/{id}/result`` (``TaskResource.getTaskResult``): the result's
  value, 204 while there is none, 403 as above; a string value comes as plain text
  (fluent-http's ``Payload`` of a String: ``text/html``), anything else as JSON;
- ``GET /api/task?from=&size=&name=``: the signed-in user's tasks only
  (``TaskFinder.findVisibleTasksFor``, ``JooqTaskRepository``'s ``USER_ID``
  filter), as ``{"items": [...], "pagination": {"count", "from", "size",
  "total"}}``, ``name`` matching a substring, case-insensitively;
- ``PUT /api/task/stop/{id}`` (``@TaskPolicy(role = PROJECT_ADMIN, ownerRole =
  PROJECT_MEMBER)``, ``policies/TaskPolicyAnnotation.java``): 500 for a task
  without ``args.defaultProject``; 403 unless the signed-in user owns the task and
  is granted that project; else cancels it and answers ``true`` (``false`` for a
  finished task); 404 when unknown;
- with ``api_key`` or ``session_cookie`` set, a request without the session cookie or
  ``Authorization: bearer <key>`` gets 401, and a non-GET request carrying the
  session cookie gets 403 unless its ``_ds_csrf_token`` cookie and
  ``X-DS-CSRF-TOKEN`` header match.

The signed-in user is ``login``, granted the projects of ``granted``.

What happens on creation is pluggable: ``on_create(task, group)`` is called with the
stored task JSON after it is stored, so a test can forward the task to a real task
service or change the stored task. ``fail_next(status, body)`` makes the next request
answer with that status, as a failing server would; ``drop_next()`` makes the server
close the next request's connection without answering.

For a page hosting Datashare's frontend plugins, it also answers as Datashare's web
server does around its task API:

- ``GET /api/users/me``: the signed-in user's details as ``web/UserResource.getUser``
  answers them (``uid``, ``name``, ``email``, ``provider``, the granted projects in
  ``groups_by_applications.datashare``, and ``projects``);
- ``pages``: HTML pages by exact path (``/`` for the app's page), ``files``: folders
  served by URL prefix (``/plugins`` for ``--pluginsDir``), both without
  authentication, as Datashare serves its page and its plugins' files;
- ``on_read(task_id)`` is called before a task is answered (alone, its result, or in
  the list), so a test can bring its state from a real task service first.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http import cookies as http_cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

OnCreate = Callable[[dict, "str | None"], None]
OnRead = Callable[[str], None]

_FINISHED = {"DONE", "ERROR", "CANCELLED"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    cookies: dict[str, str]
    body: Any = None


@dataclass
class DatashareDouble:
    api_key: str | None = None
    session_cookie: str | None = None
    cookie_name: str = "_ds_session_id"
    basic_auth: tuple[str, str] | None = None
    login: str = "local"
    on_create: OnCreate | None = None
    # Older Datashare versions answer the task list as a plain list.
    paginated: bool = True
    on_read: OnRead | None = None
    # The projects the signed-in user is granted, as its details list them.
    granted: list[str] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    tasks: dict[str, dict] = field(init=False, default_factory=dict)
    requests: list[RecordedRequest] = field(init=False, default_factory=list)
    _failures: list[tuple[int | None, str]] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = field(init=False, default=None)

    @property
    def _started_server(self) -> ThreadingHTTPServer:
        assert self._server is not None, "the double is not started"
        return self._server

    @property
    def url(self) -> str:
        host, port = self._started_server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def __enter__(self) -> DatashareDouble:
        server = self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), _handler_for(self)
        )
        server.daemon_threads = True

        # A short poll keeps shutdown quick.
        def serve():
            return server.serve_forever(poll_interval=0.05)

        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._started_server.shutdown()
        self._started_server.server_close()

    def fail_next(self, status: int, body: str = "") -> None:
        with self._lock:
            self._failures.append((status, body))

    def drop_next(self) -> None:
        with self._lock:
            self._failures.append((None, ""))

    def complete(self, task_id: str, value: Any) -> None:
        """The task is done with this result, as after a worker's result event."""
        self._update(
            task_id,
            state="DONE",
            progress=1.0,
            completedAt=_now_ms(),
            result={"@type": "TaskResult", "value": value},
        )

    def report(self, task_id: str, state: str, progress: float) -> None:
        """The task's state and progress, as after a worker's progress event."""
        self._update(task_id, state=state, progress=progress)

    def fail(self, task_id: str, name: str, message: str) -> None:
        """The task failed, as after a worker's error event."""
        error = {
            "@type": "TaskError",
            "name": name,
            "message": message,
            "cause": None,
            "stacktrace": [{"file": "tasks.py", "lineno": 12, "name": "ping"}],
        }
        self._update(task_id, state="ERROR", progress=1.0, error=error)

    def _update(self, task_id: str, **fields) -> None:
        with self._lock:
            self.tasks[task_id].update(fields)

    def user_details(self) -> dict:
        """``GET /api/users/me``: a ``DatashareUser``'s details, plus its projects."""
        return {
            "uid": self.login,
            "name": self.login,
            "email": None,
            "provider": "local",
            "groups_by_applications": {"datashare": list(self.granted)},
            "projects": [{"name": p} for p in self.granted],
        }

    def _read(self, task_id: str) -> None:
        if self.on_read is not None and task_id in self.tasks:
            self.on_read(task_id)

    def owns(self, task: dict) -> bool:
        """Whether the signed-in user owns ``task``: its args' user has its id."""
        user = task["args"].get("user")
        return isinstance(user, dict) and user.get("id") == self.login


def _now_ms() -> int:
    return int(time.time() * 1000)


def _epoch_ms(value: int | str) -> int:
    """A date as Jackson reads it (epoch milliseconds, or ISO 8601), in the epoch
    milliseconds Datashare answers."""
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value).timestamp() * 1000)


# The classes a task's user may be given as (the route casts it to a User).
_USER_CLASSES = {
    "org.icij.datashare.user.User",
    "org.icij.datashare.session.DatashareUser",
}


def _java_list(value: list) -> bool:
    """A list as Jackson types it: ``["java.util.<a Collection>", [...]]`` (the
    classes Datashare's type validator lets through for a list)."""
    return (
        len(value) == 2
        and isinstance(value[0], str)
        and value[0].startswith("java.util.")
        and isinstance(value[1], list)
    )


def _untyped_argument(args: dict) -> str | None:
    """Why Datashare's mapper refuses these args (their values must carry their
    Java types), as Jackson says it; None when it reads them."""
    for name, value in args.items():
        if isinstance(value, list):
            if not _java_list(value):
                shown = repr(value[0]) if value else "(none)"
                return (
                    f"Could not resolve type id {shown} as a subtype of"
                    f" java.lang.Object (argument {name})"
                )
        elif isinstance(value, dict):
            java_class = value.get("@type")
            if java_class is None:
                return (
                    "Could not resolve subtype of [simple type, class"
                    f" java.lang.Object]: missing type id property '@type' ({name})"
                )
            if name == "user" and java_class not in _USER_CLASSES:
                return f"class {java_class} cannot be cast to a User (argument user)"
    return None


def _handler_for(double: DatashareDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PUT(self) -> None:
            self._serve("PUT")

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(split.query).items()}
            cookies = _cookies(self.headers.get("Cookie"))
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            request = RecordedRequest(
                method, split.path, query, dict(self.headers), cookies, body
            )
            with double._lock:
                double.requests.append(request)
                failure = double._failures.pop(0) if double._failures else None
            if failure is not None:
                status, text = failure
                if status is None:
                    self.close_connection = True  # dropped: no answer at all
                    return
                self._send(status, text, "text/plain")
                return
            if method == "GET" and self._serve_static(split.path):
                return
            denied = self._check_auth(method, cookies)
            if denied is not None:
                self._send(*denied)
                return
            self._route(method, split.path, query, body)

        def _check_auth(self, method: str, cookies: dict) -> tuple | None:
            session = cookies.get(double.cookie_name)
            if session is not None and session == double.session_cookie:
                # CsrfFilter: a cookie-authenticated change needs the CSRF pair.
                csrf = cookies.get("_ds_csrf_token")
                if method != "GET" and (
                    not csrf or csrf != self.headers.get("X-DS-CSRF-TOKEN")
                ):
                    error = '{"error":"CSRF token wrong or missing"}'
                    return 403, error, "application/json"
                return None
            authorization = self.headers.get("Authorization") or ""
            scheme, _, credential = authorization.partition(" ")
            bearer = scheme.lower() == "bearer"
            if double.api_key is not None and bearer and credential == double.api_key:
                return None
            if double.basic_auth is not None and scheme.lower() == "basic":
                user, _, password = base64.b64decode(credential).decode().partition(":")
                if (user, password) == double.basic_auth:
                    return None
            if double.api_key or double.session_cookie or double.basic_auth:
                return 401, "", "text/plain"
            return None

        def _serve_static(self, path: str) -> bool:
            """A page or a file of a served folder; False when ``path`` is neither."""
            if path in double.pages:
                self._send(200, double.pages[path], "text/html;charset=UTF-8")
                return True
            for prefix, folder in double.files.items():
                if not path.startswith(prefix.rstrip("/") + "/"):
                    continue
                root = folder.resolve()
                file = (root / path[len(prefix) :].lstrip("/")).resolve()
                if not file.is_relative_to(root) or not file.is_file():
                    self._send(404, "", "text/plain")
                    return True
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                self._send_bytes(200, file.read_bytes(), kind)
                return True
            return False

        def _route(self, method: str, path: str, query: dict, body: Any) -> None:
            parts = path.strip("/").split("/")
            if method == "GET" and parts == ["api", "users", "me"]:
                self._send(200, json.dumps(double.user_details()), "application/json")
                return
            if parts[:2] != ["api", "task"]:
                self._send(404, "", "text/plain")
            elif method == "GET" and len(parts) == 2:
                self._list(query)
            elif method == "PUT" and len(parts) == 4 and parts[2] == "stop":
                self._stop(parts[3])
            elif method == "PUT" and len(parts) == 3:
                self._create(parts[2], query.get("group"), body)
            elif method == "GET" and len(parts) == 3:
                self._get(parts[2])
            elif method == "GET" and len(parts) == 4 and parts[3] == "result":
                self._result(parts[2])
            else:
                self._send(404, "", "text/plain")

        def _create(self, task_id: str, group: str | None, body: Any) -> None:
            if (
                not isinstance(body, dict)
                or body.get("@type") != "Task"
                or body.get("id") != task_id
            ):
                error = {
                    "message": "body should contain a taskView, URL id should be"
                    " present and equal to body id"
                }
                self._send(400, json.dumps(error), "application/json")
                return
            args = body.get("args") or {}
            refused = _untyped_argument(args)
            if refused is not None:
                self._send(400, json.dumps({"message": refused}), "application/json")
                return
            if body.get("state") is None or body.get("createdAt") is None:
                self._send(500, "java.lang.NullPointerException", "text/plain")
                return
            task = {
                "@type": "Task",
                "id": task_id,
                "name": body.get("name"),
                "state": "QUEUED",
                "progress": 0.0,
                "createdAt": _epoch_ms(body["createdAt"]),
                "retriesLeft": body.get("retriesLeft", 0),
                "args": args,
            }
            with double._lock:
                if task_id in double.tasks:
                    self._send(200, "", "application/json")
                    return
                double.tasks[task_id] = task
            if double.on_create is not None:
                try:
                    double.on_create(task, group)
                except Exception as e:  # noqa: BLE001  # reported, whatever it is
                    self._send(500, f"{e.__class__.__name__}: {e}", "text/plain")
                    return
            self._send(201, json.dumps({"taskId": task_id}), "application/json")

        def _visible(self, task_id: str) -> dict | None:
            """The task if the signed-in user may see it; else answers why not."""
            double._read(task_id)
            task = double.tasks.get(task_id)
            if task is None:
                self._send(404, "", "text/plain")
            elif not double.owns(task):
                self._send(403, "", "text/plain")
            else:
                return task
            return None

        def _get(self, task_id: str) -> None:
            task = self._visible(task_id)
            if task is not None:
                self._send(200, json.dumps(task), "application/json")

        def _result(self, task_id: str) -> None:
            task = self._visible(task_id)
            if task is None:
                return
            result = task.get("result")
            if result is None:
                self._send(204, "", "text/plain")
            elif isinstance(result["value"], str):
                self._send(200, result["value"], "text/html;charset=UTF-8")
            else:
                self._send(200, json.dumps(result["value"]), "application/json")

        def _list(self, query: dict) -> None:
            start, size = int(query.get("from", 0)), int(query.get("size", 10))
            name = query.get("name", "").lower()
            with double._lock:
                listed = [
                    t for t, v in double.tasks.items() if name in v["name"].lower()
                ]
            for task_id in listed:
                double._read(task_id)
            with double._lock:
                tasks = [
                    t
                    for t in double.tasks.values()
                    if name in t["name"].lower() and double.owns(t)
                ]
            if not double.paginated:
                self._send(200, json.dumps(tasks), "application/json")
                return
            items = tasks[start : start + size]
            page = {
                "items": items,
                "pagination": {
                    "count": len(items),
                    "from": start,
                    "size": size,
                    "total": len(tasks),
                },
            }
            self._send(200, json.dumps(page), "application/json")

        def _stop(self, task_id: str) -> None:
            task = double.tasks.get(task_id)
            if task is None:
                self._send(404, "", "text/plain")
                return
            project = task["args"].get("defaultProject")
            if project is None:
                error = (
                    f"java.lang.IllegalStateException: Task {task_id} does not have"
                    " a project id in its arguments"
                )
                self._send(500, error, "text/plain")
                return
            if not (double.owns(task) and project in double.granted):
                self._send(403, "", "text/plain")
                return
            with double._lock:
                stopped = task["state"] not in _FINISHED
                if stopped:
                    task["state"] = "CANCELLED"
            self._send(200, json.dumps(stopped), "application/json")

        def _send(self, status: int, body: str, content_type: str) -> None:
            self._send_bytes(status, body.encode(), content_type)

        def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            if status != 204:
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if status != 204:
                self.wfile.write(data)

    return Handler


def _cookies(header: str | None) -> dict[str, str]:
    if not header:
        return {}
    jar = http_cookies.SimpleCookie()
    jar.load(header)
    return {k: m.value for k, m in jar.items()}
