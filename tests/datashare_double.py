"""A contract double of Datashare's task API, for tests.

Datashare (a Java server) cannot run here, so this HTTP server answers as Datashare's
``TaskResource`` (prefix ``/api/task``) and its authentication filters are documented
to, and nothing more:

- ``PUT /api/task/{id}?group={group}`` with ``{"@type": "Task", "id", "name",
  "args"}``: 400 when the body is not a task or its id differs from the URL's, 201
  ``{"taskId": id}`` when created (state QUEUED, the submitting ``user`` added to the
  arguments), 200 with no body when the task already existed;
- ``GET /api/task/{id}``: the task as Datashare serializes it (camelCase fields,
  dates in epoch milliseconds, Jackson's ``@type`` entries), 404 when unknown;
- ``GET /api/task/{id}/result``: the result's value, 204 while there is none; a
  string value comes as plain text, anything else as JSON;
- ``GET /api/task?from=&size=&name=``: ``{"items": [...], "pagination": {"count",
  "from", "size", "total"}}``, ``name`` matching a substring, case-insensitively;
- ``PUT /api/task/stop/{id}``: cancels the task, answers ``true`` (or ``false`` for a
  finished task), 404 when unknown;
- with ``api_key`` or ``session_cookie`` set, a request without the session cookie or
  ``Authorization: bearer <key>`` gets 401, and a non-GET request carrying the
  session cookie gets 403 unless its ``_ds_csrf_token`` cookie and
  ``X-DS-CSRF-TOKEN`` header match.

What happens on creation is pluggable: ``on_create(task, group)`` is called with the
stored task JSON after it is stored, so a test can forward the task to a real task
service or change the stored task. ``fail_next(status, body)`` makes the next request
answer with that status, as a failing server would; ``drop_next()`` makes the server
close the next request's connection without answering.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import cookies as http_cookies
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

OnCreate = Callable[[dict, "str | None"], None]

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

    tasks: dict[str, dict] = field(init=False, default_factory=dict)
    requests: list[RecordedRequest] = field(init=False, default_factory=list)
    _failures: list[tuple[int | None, str]] = field(init=False, default_factory=list)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = field(init=False, default=None)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> DatashareDouble:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True

        # A short poll keeps shutdown quick.
        def serve():
            return self._server.serve_forever(poll_interval=0.05)

        threading.Thread(target=serve, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()

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

    def _user(self) -> dict:
        return {
            "@type": "org.icij.datashare.session.DatashareUser",
            "id": self.login,
            "name": self.login,
            "email": None,
            "provider": "local",
            "details": {},
        }


def _now_ms() -> int:
    return int(time.time() * 1000)


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
            if failure is not None and failure[0] is None:
                self.close_connection = True  # dropped: no answer at all
                return
            if failure is not None:
                self._send(failure[0], failure[1], "text/plain")
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

        def _route(self, method: str, path: str, query: dict, body: Any) -> None:
            parts = path.strip("/").split("/")
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
                    "error": "body should contain a taskView, URL id should be"
                    " present and equal to body id"
                }
                self._send(400, json.dumps(error), "application/json")
                return
            args = {"@type": "java.util.HashMap", **(body.get("args") or {})}
            args["user"] = double._user()
            task = {
                "@type": "Task",
                "id": task_id,
                "name": body.get("name"),
                "state": "QUEUED",
                "progress": 0.0,
                "createdAt": _now_ms(),
                "retriesLeft": 3,
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

        def _get(self, task_id: str) -> None:
            task = double.tasks.get(task_id)
            if task is None:
                self._send(404, "", "text/plain")
                return
            self._send(200, json.dumps(task), "application/json")

        def _result(self, task_id: str) -> None:
            task = double.tasks.get(task_id)
            if task is None:
                self._send(404, "", "text/plain")
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
                tasks = [t for t in double.tasks.values() if name in t["name"].lower()]
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
            with double._lock:
                task = double.tasks.get(task_id)
                stopped = task is not None and task["state"] not in _FINISHED
                if stopped:
                    task["state"] = "CANCELLED"
            if task is None:
                self._send(404, "", "text/plain")
                return
            self._send(200, json.dumps(stopped), "application/json")

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode()
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
