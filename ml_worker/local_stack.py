"""Runs the pipeline's services on one machine, for the demo and the tests.

The pieces are the real ones: the machine's RabbitMQ and PostgreSQL, icij-worker's
HTTP task service started with its CLI, a worker pool started with
``ml-worker workers start``, and either the configured Elasticsearch or an in-memory
emulator of its API. Each run gets its own RabbitMQ virtual host, so it never
consumes another run's tasks. Everything started here is stopped on exit, Ctrl-C
included.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from icij_worker.routing_strategy import RoutingStrategy

APP_PATH = "ml_worker.app.app"
TASK_GROUP = "PYTHON"
# This environment's console scripts: icij-worker's task service, ml-worker's CLI,
# and dbmate for the task storage's migrations.
_SCRIPTS = Path(sys.executable).parent
_READY_TIMEOUT_S = 120.0


class ServiceUnreachable(RuntimeError):
    pass


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
        start = "start it with `rabbitmq-server -detached`, or `./ml-worker up -d rabbitmq`"
        if not _port_open(self.host, self.port):
            msg = f"RabbitMQ is not reachable at {self.host}:{self.port}: {start}"
            raise ServiceUnreachable(msg)
        if not _port_open(self.host, self.management_port):
            msg = (
                f"RabbitMQ's management API is not reachable at {self.management_url}:"
                " enable it with `rabbitmq-plugins enable rabbitmq_management`"
            )
            raise ServiceUnreachable(msg)

    @contextmanager
    def temporary_vhost(self):
        """A fresh virtual host for one run, deleted afterwards."""
        vhost = f"ml-worker-{uuid.uuid4().hex[:12]}"
        auth = (self.user, self.password)
        with httpx.Client(base_url=self.management_url, auth=auth) as client:
            client.put(f"/api/vhosts/{quote(vhost)}").raise_for_status()
            client.put(
                f"/api/permissions/{quote(vhost)}/{quote(self.user)}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()
            try:
                yield vhost
            finally:
                client.delete(f"/api/vhosts/{quote(vhost)}")


    def task_queue_consumers(self, vhost: str, *, quoted: bool = False) -> int | None:
        """How many workers consume the task group's queue in ``vhost``: 0 until one
        declared it, None while RabbitMQ has no statistics of the queue (for a few
        seconds at times: measured 2.75 s after its creation). ``quoted``: ``vhost``
        is URL-encoded already, as icij-worker's ``rabbitmq_vhost`` setting is (``%2F``
        for ``/``). Raises httpx.HTTPError when the management API does not tell."""
        queue = RoutingStrategy.amqp_task_routing(TASK_GROUP).queue_name
        vhost = vhost if quoted else quote(vhost, safe="")
        path = f"/api/queues/{vhost}/{quote(queue, safe='')}"
        res = httpx.get(
            f"{self.management_url}{path}", auth=(self.user, self.password), timeout=5
        )
        if res.status_code == 404:
            return 0
        res.raise_for_status()
        return res.json().get("consumers")


def wait_for_workers(
    rabbitmq: RabbitMQ,
    vhost: str,
    n_consumers: int,
    pool: subprocess.Popen,
    *,
    log: Path,
    timeout_s: float = 300.0,
) -> None:
    """Until ``n_consumers`` workers consume the task queue (each loads torch first)."""
    deadline = time.monotonic() + timeout_s
    while (rabbitmq.task_queue_consumers(vhost) or 0) < n_consumers:
        if pool.poll() is not None:
            raise ServiceUnreachable(f"the workers exited at start-up: see {log}")
        if time.monotonic() > deadline:
            raise ServiceUnreachable(f"workers not ready after {timeout_s:.0f}s: see {log}")
        time.sleep(0.5)


@dataclass(frozen=True)
class Postgres:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""

    def check(self) -> None:
        if not _port_open(self.host, self.port):
            msg = (
                f"PostgreSQL is not reachable at {self.host}:{self.port}: start it"
                " (`pg_ctlcluster <version> main start`, or `./ml-worker up -d postgres`)"
            )
            raise ServiceUnreachable(msg)


@contextmanager
def es_emulator(*, memory_limit_bytes: int | None = None):
    """An in-memory server speaking Elasticsearch's API; yields its URL.

    ``memory_limit_bytes`` caps its address space, so that an index too large for
    the machine fails the emulator alone; its garbage collector is told to work
    harder from 80 % of it (GOMEMLIMIT: the emulator is a Go program).
    """
    from osmem_server import OsmemServer

    with _environment(GOMEMLIMIT=_go_memory_limit(memory_limit_bytes)):
        server = OsmemServer.start(japanese=False)
    try:
        if memory_limit_bytes is not None:
            limit = (memory_limit_bytes, memory_limit_bytes)
            resource.prlimit(server.pid, resource.RLIMIT_AS, limit)
        yield server.url
    finally:
        server.close()


def _go_memory_limit(memory_limit_bytes: int | None) -> str | None:
    if memory_limit_bytes is None:
        return None
    return f"{memory_limit_bytes * 4 // 5 // 2**20}MiB"


@contextmanager
def _environment(**values: str | None):
    """Sets the variables whose value is not None, for the block only."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def s3_emulator(workdir: Path):
    """moto's in-memory server of the S3 API, in its own process; yields its URL.

    It honours conditional writes (``If-None-Match``: 412), as Lance's commits on
    ``s3://`` require. Any bucket name is accepted with any key pair.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "s3.log"
    cmd = [_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with _process(cmd, log) as process:
        _wait_until(
            lambda: _port_open("127.0.0.1", port), process, what=f"S3 at {url}", log=log
        )
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def task_service(
    workdir: Path, *, rabbitmq: RabbitMQ, vhost: str, postgres: Postgres, port: int
):
    """icij-worker's HTTP task service for the ml_worker app; yields its URL."""
    config = {
        "app_title": "ml-worker tasks",
        "host": "127.0.0.1",
        "port": port,
        "task_manager": {
            "backend": "amqp",
            "app_path": APP_PATH,
            **_rabbitmq_settings(rabbitmq, vhost),
            "storage": {
                "host": postgres.host,
                "port": postgres.port,
                "user": postgres.user,
                "password": postgres.password,
            },
        },
    }
    config_path = workdir / "task-service.json"
    config_path.write_text(json.dumps(config, indent=2))
    url = f"http://127.0.0.1:{port}"
    cmd = [_bin("icij-http-server"), "--config-path", str(config_path)]
    with _process(cmd, workdir / "task-service.log") as process:
        _wait_until(
            lambda: http_ok(f"{url}/openapi.json"),
            process,
            what=f"task service at {url}",
            log=workdir / "task-service.log",
        )
        yield url


@contextmanager
def worker_pool(
    workdir: Path,
    *,
    n_workers: int,
    rabbitmq: RabbitMQ,
    vhost: str,
    ml_worker_config: dict,
    wrap: Callable[[list[str]], list[str]] | None = None,
):
    """``n_workers`` worker processes consuming the PYTHON task group, run by
    ``ml-worker workers start``, which restarts those that exit; the Popen's process
    group is the whole pool.

    ``wrap`` turns the pool's command into the one to run (e.g. inside a network
    namespace).
    """
    app_config_path = workdir / "ml-worker.json"
    app_config_path.write_text(json.dumps(ml_worker_config, indent=2))
    worker_config = {
        "type": "amqp",
        "app_bootstrap_config_path": str(app_config_path),
        **_rabbitmq_settings(rabbitmq, vhost),
    }
    config_path = workdir / "workers.json"
    config_path.write_text(json.dumps(worker_config, indent=2))
    cmd = [
        _bin("ml-worker"),
        "workers",
        "start",
        "-n",
        str(n_workers),
        "-g",
        TASK_GROUP,
        "-c",
        str(config_path),
    ]
    env = {"ICIJ_WORKER_TYPE": "amqp", "HF_HUB_OFFLINE": "1"}
    if wrap is not None:
        cmd = wrap(cmd)
    with _process(cmd, workdir / "workers.log", env=env) as process:
        yield process


def _rabbitmq_settings(rabbitmq: RabbitMQ, vhost: str) -> dict:
    return {
        "rabbitmq_host": rabbitmq.host,
        "rabbitmq_port": rabbitmq.port,
        "rabbitmq_management_port": rabbitmq.management_port,
        "rabbitmq_user": rabbitmq.user,
        "rabbitmq_password": rabbitmq.password,
        "rabbitmq_vhost": vhost,
    }


def _bin(name: str) -> str:
    """A console script of this environment, whatever the caller's PATH."""
    return str(_SCRIPTS / name)


@contextmanager
def _process(cmd: list[str], log_path: Path, env: dict | None = None):
    env = {**os.environ, "PATH": _env_path(), **(env or {})}
    with log_path.open("ab") as log:
        # Its own session, so stopping it stops the processes it spawned too.
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        _stop(process)


def _env_path() -> str:
    return os.pathsep.join([str(_SCRIPTS), os.environ.get("PATH", "")])


def _stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _wait_until(ready, process: subprocess.Popen, *, what: str, log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ServiceUnreachable(f"{what} exited at start-up:\n{tail}")
        if time.monotonic() > deadline:
            raise ServiceUnreachable(f"{what} not ready after {_READY_TIMEOUT_S}s")
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return True
    except OSError:
        return False
