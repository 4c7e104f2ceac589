"""The services under the workers, on one machine: the machine's RabbitMQ and
PostgreSQL (a virtual host and a cluster for each run), the in-memory servers of
Elasticsearch's and S3's APIs, Temporal's development server and icij-worker's HTTP
task service."""

from __future__ import annotations

import dataclasses
import json
import resource
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx

from ml_worker.icij import broker
from ml_worker.icij.broker import port_open
from ml_worker.icij.engine import APP_PATH
from ml_worker_dev.local_stack.processes import (
    ServiceUnreachable,
    console_script,
    environment,
    free_port,
    http_ok,
    started,
    wait_until,
)

# icij-worker's PostgreSQL storage holds 1 connection by default, which the service's
# consumption of worker events and every HTTP request take turns on. This and the
# CLI's two requests fewer per search, together (not measured apart), took an idle
# stack's search round trip from 241 to 117 ms (p50), the part after the worker
# published its result from 136 to 45 ms (bench.search_e2e --queries 30, load
# average 7 to 10 from other work on the machine).
TASK_STORAGE_CONNECTIONS = 4


@dataclass(frozen=True)
class RabbitMQ(broker.RabbitMQ):
    """The broker, with what the tests and the demo need besides."""

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

    def purge_task_queue(self, vhost: str, group: str) -> None:
        """Drop the tasks waiting in ``group``'s queue in ``vhost``."""
        queue = quote(self.task_queue(vhost, group).queue, safe="")
        httpx.delete(
            f"{self.management_url}/api/queues/{quote(vhost, safe='')}/{queue}/contents",
            auth=(self.user, self.password),
            timeout=5,
        ).raise_for_status()


def rabbitmq_from_env() -> RabbitMQ:
    """RabbitMQ as icij-worker's workers see it (``ICIJ_WORKER_RABBITMQ_*``)."""
    return RabbitMQ(**dataclasses.asdict(broker.RabbitMQSettings().broker()))


@dataclass(frozen=True)
class Postgres:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""

    def check(self) -> None:
        if not port_open(self.host, self.port):
            msg = (
                f"PostgreSQL is not reachable at {self.host}:{self.port}: start it"
                " (`pg_ctlcluster <version> main start`, or `./ml-worker up -d postgres`)"
            )
            raise ServiceUnreachable(msg)

    @contextmanager
    def temporary_cluster(self) -> Iterator[Postgres]:
        """A cluster of this machine's PostgreSQL for one run, on a free port,
        dropped afterwards with the tasks stored in it: icij-worker's task service
        keeps every run's tasks in one database of a server, so a shared server
        listed the tasks of every earlier run ("5 of 1357"). Made with Debian's
        cluster tools; where they are missing, or the server is not this
        machine's, this server as it is."""
        version = _local_postgres_version() if self.host == "127.0.0.1" else None
        if version is None:
            yield self
            return
        name, port = f"ml-worker-{uuid.uuid4().hex[:12]}", free_port()
        subprocess.run(
            [
                "pg_createcluster",
                version,
                name,
                "--port",
                str(port),
                "--start",
                "--",
                "--auth=trust",
            ],
            check=True,
            capture_output=True,
        )
        try:
            cluster = dataclasses.replace(self, port=port)
            cluster.check()
            yield cluster
        finally:
            subprocess.run(
                ["pg_dropcluster", version, name, "--stop"], capture_output=True
            )


def _local_postgres_version() -> str | None:
    """The version of this machine's PostgreSQL clusters, where Debian's cluster
    tools manage them (one version: the newest)."""
    root = Path("/etc/postgresql")
    if shutil.which("pg_createcluster") is None or not root.is_dir():
        return None
    versions = sorted((p.name for p in root.iterdir()), key=lambda v: float(v))
    return versions[-1] if versions else None


@contextmanager
def es_emulator(*, memory_limit_bytes: int | None = None):
    """An in-memory server speaking Elasticsearch's API; yields its URL.

    ``memory_limit_bytes`` caps its address space, so that an index too large for
    the machine fails the emulator alone; its garbage collector is told to work
    harder from 80 % of it (GOMEMLIMIT: the emulator is a Go program).
    """
    from osmem_server import OsmemServer

    with environment(GOMEMLIMIT=_go_memory_limit(memory_limit_bytes)):
        server = OsmemServer.start(japanese=False)
    try:
        if memory_limit_bytes is not None:
            limit = (memory_limit_bytes, memory_limit_bytes)
            resource.prlimit(server.pid, resource.RLIMIT_AS, limit)
        yield server.url
    finally:
        server.close()
        # osmem-server's close leaves open the pipe it read the server's URL from:
        # a ResourceWarning whenever the object is collected, unless closed here.
        if server.process.stdout is not None:
            server.process.stdout.close()


def _go_memory_limit(memory_limit_bytes: int | None) -> str | None:
    if memory_limit_bytes is None:
        return None
    return f"{memory_limit_bytes * 4 // 5 // 2**20}MiB"


@contextmanager
def s3_emulator(workdir: Path):
    """moto's in-memory server of the S3 API, in its own process; yields its URL.

    It honours conditional writes (``If-None-Match``: 412), as Lance's commits on
    ``s3://`` require. Any bucket name is accepted with any key pair.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / "s3.log"
    cmd = [console_script("moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with started(cmd, log) as process:
        wait_until(
            lambda: port_open("127.0.0.1", port), process, what=f"S3 at {url}", log=log
        )
        yield url


@contextmanager
def temporal_server(workdir: Path, namespace: str = "datashare-default"):
    """The Temporal CLI's development server (in memory), with ``namespace`` and the
    search attributes Datashare starts its tasks' workflows with; yields its
    address (host:port)."""
    from ml_worker.temporal.connection import SEARCH_ATTRIBUTES, attribute_type_name

    port, ui_port = free_port(), free_port()
    cmd = [console_script("temporal"), "server", "start-dev", "--ip", "127.0.0.1"]
    cmd += ["--port", str(port), "--ui-port", str(ui_port), "--headless"]
    cmd += ["--namespace", namespace]
    for name, kind in SEARCH_ATTRIBUTES.items():
        cmd += ["--search-attribute", f"{name}={attribute_type_name(kind)}"]
    log = workdir / "temporal.log"
    with started(cmd, log) as process:
        wait_until(
            lambda: port_open("127.0.0.1", port),
            process,
            what="Temporal server",
            log=log,
        )
        yield f"127.0.0.1:{port}"


@contextmanager
def task_service(
    workdir: Path,
    *,
    rabbitmq: RabbitMQ,
    vhost: str,
    postgres: Postgres,
    port: int,
    storage_connections: int = TASK_STORAGE_CONNECTIONS,
):
    """icij-worker's HTTP task service for the ml_worker app; yields its URL."""
    config = {
        "app_title": "ml-worker tasks",
        "host": "127.0.0.1",
        "port": port,
        "task_manager": {
            "backend": "amqp",
            "app_path": APP_PATH,
            **rabbitmq_settings(rabbitmq, vhost),
            "storage": {
                "host": postgres.host,
                "port": postgres.port,
                "user": postgres.user,
                "password": postgres.password,
                "max_connections": storage_connections,
            },
        },
    }
    config_path = workdir / "task-service.json"
    config_path.write_text(json.dumps(config, indent=2))
    url = f"http://127.0.0.1:{port}"
    cmd = [console_script("icij-http-server"), "--config-path", str(config_path)]
    with started(cmd, workdir / "task-service.log") as process:
        wait_until(
            lambda: http_ok(f"{url}/openapi.json"),
            process,
            what=f"task service at {url}",
            log=workdir / "task-service.log",
        )
        yield url


def rabbitmq_settings(rabbitmq: RabbitMQ, vhost: str) -> dict:
    return {
        "rabbitmq_host": rabbitmq.host,
        "rabbitmq_port": rabbitmq.port,
        "rabbitmq_management_port": rabbitmq.management_port,
        "rabbitmq_user": rabbitmq.user,
        "rabbitmq_password": rabbitmq.password,
        "rabbitmq_vhost": vhost,
    }


@contextmanager
def task_stack(
    workdir: Path, *, rabbitmq: RabbitMQ, postgres: Postgres, es_url: str
) -> Iterator[tuple[str, str, dict]]:
    """A fresh virtual host and the task service in it, its tasks in a PostgreSQL
    cluster of its own; yields (vhost, the service's URL, the workers' settings
    that point at them)."""
    with (
        rabbitmq.temporary_vhost() as vhost,
        postgres.temporary_cluster() as storage,
        task_service(
            workdir, rabbitmq=rabbitmq, vhost=vhost, postgres=storage, port=free_port()
        ) as url,
    ):
        settings = {
            "es_address": es_url,
            "task_service_url": url,
            "vector_db_uri": str((workdir / "vectors").resolve()),
        }
        yield vhost, url, settings
