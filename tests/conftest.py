"""Shared fixtures: real services only.

Elasticsearch: the server at ``ML_WORKER_TEST_ES_URL`` when set (a real
Elasticsearch 7.17, e.g. from docker-compose.yml), otherwise an in-memory emulator of
its API started for the session. RabbitMQ and PostgreSQL: the machine's own.
"""

from __future__ import annotations

import os
import uuid

# Before any Hugging Face import: tests never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lancedb  # noqa: E402
import pytest  # noqa: E402
from elasticsearch import AsyncElasticsearch  # noqa: E402

from ml_worker import store  # noqa: E402
from ml_worker.config import MLWorkerConfig  # noqa: E402
from ml_worker.documents import es_client  # noqa: E402
from ml_worker.local_stack import Postgres, RabbitMQ, es_emulator  # noqa: E402

ES_URL_ENV = "ML_WORKER_TEST_ES_URL"


@pytest.fixture(scope="session")
def es_url():
    url = os.environ.get(ES_URL_ENV)
    if url:
        yield url
        return
    with es_emulator() as url:
        yield url


@pytest.fixture
async def es(es_url) -> AsyncElasticsearch:
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
def rabbitmq() -> RabbitMQ:
    rabbitmq = RabbitMQ()
    rabbitmq.check()
    return rabbitmq


@pytest.fixture(scope="session")
def postgres() -> Postgres:
    postgres = Postgres()
    postgres.check()
    return postgres
