"""Shared fixtures: real services only.

Elasticsearch: the server at ``ML_WORKER_TEST_ES_URL`` when set (a real
Elasticsearch 7.17, e.g. from docker-compose.yml), otherwise an in-memory emulator of
its API started for the session. RabbitMQ and PostgreSQL: the machine's own. S3: the
endpoint at ``ML_WORKER_TEST_S3_URL`` when set (AWS S3, MinIO...: its key pair in
``ML_WORKER_TEST_S3_ACCESS_KEY_ID`` and ``ML_WORKER_TEST_S3_SECRET_ACCESS_KEY``, its
region in ``ML_WORKER_TEST_S3_REGION``), otherwise moto's server of its API.
Temporal: the server at ``ML_WORKER_TEST_TEMPORAL_ADDRESS`` when set (its namespace
``datashare-default`` with the search attributes Datashare starts tasks with:
Progress and MaxProgress, Double, and UserId, Keyword), otherwise the Temporal
CLI's development server.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Before any Hugging Face import: tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import boto3
import lancedb
import pytest
from elasticsearch import AsyncElasticsearch

from ml_worker import store
from ml_worker.config import MLWorkerConfig
from ml_worker.datashare_api import DatashareTaskClient
from ml_worker.es_client import es_client
from ml_worker_dev.local_stack import (
    Postgres,
    RabbitMQ,
    es_emulator,
    s3_emulator,
    task_stack,
    temporal_server,
    worker_pool,
)
from tests.datashare_double import DatashareDouble

ES_URL_ENV = "ML_WORKER_TEST_ES_URL"
S3_ENV = "ML_WORKER_TEST_S3_"
TEMPORAL_ENV = "ML_WORKER_TEST_TEMPORAL_ADDRESS"


@pytest.fixture(scope="session")
def es_url():
    url = os.environ.get(ES_URL_ENV)
    if url:
        yield url
        return
    with es_emulator() as url:
        yield url


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    access_key_id: str
    secret_access_key: str
    region: str

    def storage_options(self, url: str | None = None) -> dict[str, str]:
        """LanceDB's options to reach it, at ``url`` if given (a proxy of it)."""
        return {
            "aws_endpoint": url or self.url,
            "aws_region": self.region,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "allow_http": "true",
        }

    @contextmanager
    def bucket(self):
        """A fresh bucket, emptied and deleted afterwards; yields its name."""
        name = f"ml-worker-test-{uuid.uuid4().hex[:12]}"
        client = self.client()
        location = {}
        if self.region != "us-east-1":
            location = {
                "CreateBucketConfiguration": {"LocationConstraint": self.region}
            }
        client.create_bucket(Bucket=name, **location)
        try:
            yield name
        finally:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=name, Delete={"Objects": keys})
            client.delete_bucket(Bucket=name)

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Endpoint]:
    url = os.environ.get(f"{S3_ENV}URL")
    if url:
        yield S3Endpoint(
            url,
            os.environ[f"{S3_ENV}ACCESS_KEY_ID"],
            os.environ[f"{S3_ENV}SECRET_ACCESS_KEY"],
            os.environ.get(f"{S3_ENV}REGION", "us-east-1"),
        )
        return
    with s3_emulator(tmp_path_factory.mktemp("s3")) as url:
        # moto takes any key pair: these are told apart from anything else in logs.
        yield S3Endpoint(url, "moto-key-id", "moto-secret-key", "us-east-1")


@pytest.fixture
def s3_bucket(s3) -> Iterator[str]:
    with s3.bucket() as name:
        yield name


@pytest.fixture
async def es(es_url) -> AsyncIterator[AsyncElasticsearch]:
    client = es_client(es_url)
    yield client
    await client.close()


@pytest.fixture
def project() -> str:
    """A fresh project (index) name, so tests never see each other's documents."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def vector_db(tmp_path):
    return store.connect(str(tmp_path / "vectors"))


@pytest.fixture
def lancedb_sessions(monkeypatch) -> list:
    """The LanceDB sessions (a connection's caches) created during a test, each
    with the sizes it was given."""
    sessions, session_type = [], lancedb.Session

    def recorded_session(**sizes):
        session = session_type(**sizes)
        sessions.append((sizes, session))
        return session

    monkeypatch.setattr(lancedb, "Session", recorded_session)
    return sessions


@pytest.fixture
def config(es_url, tmp_path) -> MLWorkerConfig:
    return MLWorkerConfig(es_address=es_url, vector_db_uri=str(tmp_path / "vectors"))


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory) -> Iterator[str]:
    address = os.environ.get(TEMPORAL_ENV)
    if address:
        yield address
        return
    with temporal_server(tmp_path_factory.mktemp("temporal")) as address:
        yield address


@pytest.fixture(scope="session")
def rabbitmq() -> RabbitMQ:
    rabbitmq = RabbitMQ()
    rabbitmq.check()
    return rabbitmq


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    postgres = Postgres()
    postgres.check()
    return postgres


@pytest.fixture
def datashare():
    """The contract double of Datashare's task API (Datashare cannot run here)."""
    with DatashareDouble() as double:
        yield double


@pytest.fixture
async def datashare_client(datashare):
    async with DatashareTaskClient(datashare.url) as client:
        yield client


@dataclass(frozen=True)
class SessionStack:
    """The task service of the session, in its own RabbitMQ virtual host."""

    workdir: Path
    vhost: str
    url: str  # the task service's
    # The workers' settings (MLWorkerConfig fields) that point at the task service,
    # the session's Elasticsearch and a LanceDB folder in ``workdir``.
    settings: dict


@pytest.fixture(scope="session")
def session_stack(
    tmp_path_factory, es_url, rabbitmq, postgres
) -> Iterator[SessionStack]:
    """icij-worker's HTTP task service (tasks stored in the machine's PostgreSQL)
    in a fresh RabbitMQ virtual host, started once for the session's end-to-end
    modules; no worker (``session_workers`` adds them).

    Tasks created here are seen by every module using it: give each test its own
    project (the ``project`` fixture). A module that needs a service of its own
    (other workers' settings, a broker cut off) starts one with ``task_stack``.
    """
    workdir = tmp_path_factory.mktemp("session-stack")
    with task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url) as (
        vhost,
        url,
        settings,
    ):
        yield SessionStack(workdir, vhost, url, settings)


# The shared pool: its vectorizing workers, beside one search and one fan-out worker.
SESSION_WORKERS = 2


@pytest.fixture(scope="session")
def session_workers(session_stack, rabbitmq) -> Iterator[SessionStack]:
    """``session_stack`` with a worker pool consuming its tasks, ready: the
    processes of ``ml-worker workers start -n SESSION_WORKERS`` with the stack's
    settings.

    Shared by the modules that only submit tasks; those that kill, stop or
    reconfigure workers start their own pools in their own stack (workers in this
    virtual host would take their tasks). Shared, test_cli, test_e2e and
    test_icij_task_client ran in 453 s instead of 650 s, one pool start-up fewer
    (load average 10 to 16 from other work on the machine).
    """
    config = {**session_stack.settings, "es_retry_s": 30.0}
    with worker_pool(
        session_stack.workdir,
        n_workers=SESSION_WORKERS,
        rabbitmq=rabbitmq,
        vhost=session_stack.vhost,
        ml_worker_config=config,
        wait=True,
    ):
        yield session_stack


@pytest.fixture(autouse=True)
def _unit_tests_start_nothing(request, monkeypatch):
    """A test marked ``unit`` fails if it starts a process or loads a model: the
    unit tier stays a matter of seconds (``pytest -m unit``)."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refused(what: str):
        def refuse(*_, **__):
            raise AssertionError(f"a unit test {what}: mark it for a service tier")

        return refuse

    from ml_worker import embedding

    monkeypatch.setattr(subprocess.Popen, "__init__", refused("starts a process"))
    monkeypatch.setattr(embedding, "load_model", refused("loads a model"))
    monkeypatch.setattr(embedding, "loaded_e5", refused("loads a model"))
