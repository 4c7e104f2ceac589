"""Elasticsearch's client, as the workers and the command line build it: from
settings or an address.

Imported only by what uses it: the import of Elasticsearch's client took 0.5 s of
``ml-worker search``'s 3 s start here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ml_worker.config import MLWorkerConfig

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
