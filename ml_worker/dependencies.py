"""Connections opened once per worker process and handed to the tasks.

The app's lifespan runs the setup functions in order when a worker process starts
and the teardowns in reverse when it stops. Tasks read the connections through the
``lifespan_*`` accessors, which fail clearly outside a set-up worker.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import lancedb
from elasticsearch import AsyncElasticsearch
from icij_common.logging_utils import setup_loggers
from icij_worker import AsyncApp, WorkerConfig

from ml_worker import embedding, store
from ml_worker.clients import es_client_from, task_client_from
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import FIND_MOST_SIMILAR, VECTORIZE_DOCS
from ml_worker.exceptions import DependencyNotSetUp
from ml_worker.task_client import TaskClient

logger = logging.getLogger(__name__)

_CONFIG: MLWorkerConfig | None = None
_ES_CLIENT: AsyncElasticsearch | None = None
_TASK_CLIENT: TaskClient | None = None
_VECTOR_DB: lancedb.DBConnection | None = None


def load_config(
    worker_config: WorkerConfig | None = None, config_path: Path | None = None, **_
) -> None:
    """From icij-worker's ``app_bootstrap_config_path``, or ``config_path`` (the
    Temporal worker's), or the environment alone."""
    global _CONFIG
    path: Path | None = config_path or (
        worker_config and worker_config.app_bootstrap_config_path
    )
    _CONFIG = MLWorkerConfig.from_file(path) if path else MLWorkerConfig()


def setup_loggers_(**_) -> None:
    config = lifespan_config()
    setup_loggers(
        ["__main__", "ml_worker"], level=logging.getLevelName(config.log_level)
    )
    # icij-worker 0.19.5 keeps its events' timestamps as ISO strings, which
    # serialize right but make pydantic warn at every event: two lines per task
    # progress in the worker's log, nothing to act on.
    warnings.filterwarnings(
        "ignore",
        message="Pydantic serializer warnings",
        category=UserWarning,
        module="icij_common.registrable",
    )
    logger.info("worker config: %s", config.model_dump_json())  # secrets stay masked


def setup_embedding(
    app: AsyncApp | None = None, task_names: Iterable[str] = (), **_
) -> None:
    config = lifespan_config()
    embedding.use_device(config.device, config.precision, config.torch_threads)
    embedding.use_query_encoder(config.query_encoder)
    # Loaded now, once per process, so the first task does not wait for them; and
    # only where this worker's group runs the task that needs them: the model (and
    # torch: 0.9 GiB, docs/performance.md) for document batches, the query encoder
    # for searches.
    runs = set(app.registry) if app is not None else set(task_names)
    embedding.preload(
        config.model,
        documents=VECTORIZE_DOCS in runs,
        queries=FIND_MOST_SIMILAR in runs,
    )


async def setup_es_client(**_) -> None:
    global _ES_CLIENT
    _ES_CLIENT = es_client_from(lifespan_config())


async def teardown_es_client(*_) -> None:
    global _ES_CLIENT
    if _ES_CLIENT is not None:
        await _ES_CLIENT.close()
    _ES_CLIENT = None


async def setup_task_client(**_) -> None:
    global _TASK_CLIENT
    _TASK_CLIENT = task_client_from(lifespan_config())
    await _TASK_CLIENT.__aenter__()


async def teardown_task_client(exc_type=None, exc_value=None, tb=None) -> None:
    global _TASK_CLIENT
    if _TASK_CLIENT is not None:
        await _TASK_CLIENT.__aexit__(exc_type, exc_value, tb)
    _TASK_CLIENT = None


def setup_vector_db(**_) -> None:
    global _VECTOR_DB
    _VECTOR_DB = store.connect_from(lifespan_config())


def teardown_vector_db(*_) -> None:
    global _VECTOR_DB
    _VECTOR_DB = None


def lifespan_config() -> MLWorkerConfig:
    if _CONFIG is None:
        raise DependencyNotSetUp("config")
    return _CONFIG


def lifespan_es_client() -> AsyncElasticsearch:
    if _ES_CLIENT is None:
        raise DependencyNotSetUp("Elasticsearch client")
    return _ES_CLIENT


def lifespan_task_client() -> TaskClient:
    if _TASK_CLIENT is None:
        raise DependencyNotSetUp("task client")
    return _TASK_CLIENT


def lifespan_vector_db() -> lancedb.DBConnection:
    if _VECTOR_DB is None:
        raise DependencyNotSetUp("vector database")
    return _VECTOR_DB


DEPENDENCIES = [
    ("configuration loading", load_config, None),
    ("loggers setup", setup_loggers_, None),
    ("embedding device", setup_embedding, None),
    ("Elasticsearch client", setup_es_client, teardown_es_client),
    ("task client", setup_task_client, teardown_task_client),
    ("vector database", setup_vector_db, teardown_vector_db),
]
