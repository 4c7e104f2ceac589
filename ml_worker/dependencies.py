"""Connections opened once per worker process and handed to the tasks.

``worker_dependencies`` sets them up when a worker process starts and tears them
down when it stops, whatever the engine: each engine enters it in its own
lifespan (``ml_worker.icij.dependencies``, ``ml_worker.temporal.worker``).
``ml_worker.invoke`` hands them to the tasks that take them (``PROVIDERS``); the
``lifespan_*`` accessors fail clearly outside a set-up worker.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import lancedb
from elasticsearch import AsyncElasticsearch
from icij_common.logging_utils import setup_loggers

from ml_worker import embedding, store
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import FIND_MOST_SIMILAR, VECTORIZE_DOCS
from ml_worker.engine import TaskEngine
from ml_worker.es_client import es_client_from
from ml_worker.exceptions import DependencyNotSetUp

logger = logging.getLogger(__name__)

_CONFIG: MLWorkerConfig | None = None
_ES_CLIENT: AsyncElasticsearch | None = None
_VECTOR_DB: lancedb.DBConnection | None = None
_ENGINE: TaskEngine | None = None


@asynccontextmanager
async def worker_dependencies(
    config_path: Path | None, task_names: Iterable[str]
) -> AsyncIterator[MLWorkerConfig]:
    """The process's settings (from ``config_path``, a JSON file, overridden by the
    environment), loggers, models and connections, for the tasks of
    ``task_names``; yields the settings."""
    global _CONFIG, _ES_CLIENT, _VECTOR_DB, _ENGINE
    config = MLWorkerConfig.from_file(config_path) if config_path else MLWorkerConfig()
    _CONFIG = config
    try:
        _setup_loggers(config)
        _setup_embedding(config, set(task_names))
        _ES_CLIENT = es_client_from(config)
        _VECTOR_DB = store.connect_from(config)
        yield config
    finally:
        if _ES_CLIENT is not None:
            await _ES_CLIENT.close()
        _CONFIG, _ES_CLIENT, _VECTOR_DB, _ENGINE = None, None, None, None


def _setup_loggers(config: MLWorkerConfig) -> None:
    setup_loggers(
        ["__main__", "ml_worker"], level=logging.getLevelName(config.log_level)
    )
    logger.info("worker config: %s", config.model_dump_json())  # secrets stay masked


def _setup_embedding(config: MLWorkerConfig, task_names: set[str]) -> None:
    embedding.use_device(config.device, config.precision, config.torch_threads)
    embedding.use_query_encoder(config.query_encoder)
    # Loaded now, once per process, so the first task does not wait for them; and
    # only where this worker's tasks need them: the model (and torch: 0.9 GiB,
    # docs/performance.md) for document batches, the query encoder for searches.
    embedding.preload(
        config.model,
        documents=VECTORIZE_DOCS in task_names,
        queries=FIND_MOST_SIMILAR in task_names,
    )


def lifespan_config() -> MLWorkerConfig:
    if _CONFIG is None:
        raise DependencyNotSetUp("config")
    return _CONFIG


def lifespan_es_client() -> AsyncElasticsearch:
    if _ES_CLIENT is None:
        raise DependencyNotSetUp("Elasticsearch client")
    return _ES_CLIENT


def lifespan_vector_db() -> lancedb.DBConnection:
    if _VECTOR_DB is None:
        raise DependencyNotSetUp("vector database")
    return _VECTOR_DB


def use_engine(engine: TaskEngine) -> None:
    """The engine this worker runs on, as the engine's lifespan knows it (with the
    broker settings of the worker's own configuration)."""
    global _ENGINE
    _ENGINE = engine


def lifespan_engine() -> TaskEngine:
    """The engine this worker runs on: the one its engine's lifespan set, or the
    one its settings name."""
    from ml_worker.engines import engine_for

    return _ENGINE or engine_for(lifespan_config())


# What a task may take, by the name of its parameter (arguments.INJECTED).
PROVIDERS: dict[str, Callable[[], Any]] = {
    "config": lifespan_config,
    "es_client": lifespan_es_client,
    "vector_db": lifespan_vector_db,
    "engine": lifespan_engine,
}
