"""Clients of the services the workers and the command line talk to: the one place
they are built, from settings or an address.

Kept apart from the worker's dependencies so that the command line builds them
without loading the model libraries; Elasticsearch's client is imported only by
what uses it (its import took 0.5 s of ``ml-worker search``'s 3 s start here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from pydantic import SecretStr

from ml_worker.config import Engine, MLWorkerConfig, TaskServiceKind
from ml_worker.task_client import DatashareTaskClient, ICIJTaskClient, TaskClient

if TYPE_CHECKING:
    from elasticsearch import AsyncElasticsearch


def es_client(
    address: str,
    *,
    username: str | None = None,
    password: str | None = None,
    timeout_s: float = 30.0,
) -> AsyncElasticsearch:
    """The client of an Elasticsearch (7.x API) at ``address``."""
    from elasticsearch import AsyncElasticsearch

    auth = (username, password) if username else None
    client = AsyncElasticsearch(address, http_auth=auth, timeout=timeout_s)
    # The 7.17 client refuses servers without Elasticsearch's product header;
    # ES-API-compatible servers (OpenSearch, test emulators) do not send it.
    client.transport._verified_elasticsearch = True  # type: ignore[attr-defined]
    return client


def es_client_from(config: MLWorkerConfig) -> AsyncElasticsearch:
    password = config.es_password.get_secret_value() if config.es_password else None
    return es_client(
        config.es_address,
        username=config.es_username,
        password=password,
        timeout_s=config.es_timeout_s,
    )


def task_client_from(config: MLWorkerConfig) -> TaskClient:
    if config.engine is Engine.TEMPORAL:
        # Datashare 20 starts the tasks' workflows itself: the command line does too.
        from ml_worker.temporal.task_client import TemporalTaskClient

        return TemporalTaskClient(config)
    auth = None
    if config.task_service_user:
        auth = httpx.BasicAuth(
            config.task_service_user, _secret(config.task_service_password) or ""
        )
    if config.task_service is TaskServiceKind.ICIJ:
        return ICIJTaskClient(config.task_service_url, auth=auth)
    return DatashareTaskClient(
        config.task_service_url,
        auth=auth,
        api_key=_secret(config.task_service_api_key),
        session_cookie=_secret(config.task_service_cookie),
        cookie_name=config.task_service_cookie_name,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None
