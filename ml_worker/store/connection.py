"""Connections to the vector database, with caches of bounded size."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import lancedb

from ml_worker.config import (
    VECTOR_DB_INDEX_CACHE_MB,
    VECTOR_DB_METADATA_CACHE_MB,
    MLWorkerConfig,
)
from ml_worker.store.object_store import s3_settings

_MIB = 1024 * 1024


def connect(
    uri: str,
    *,
    storage_options: dict[str, str] | None = None,
    index_cache_mb: int = VECTOR_DB_INDEX_CACHE_MB,
    metadata_cache_mb: int = VECTOR_DB_METADATA_CACHE_MB,
) -> lancedb.DBConnection:
    """The database, with caches of bounded size.

    Unbounded, a worker's memory would grow with the projects it writes: every
    version a write commits (two a batch) leaves its manifest, which lists all the
    table's fragments, in the metadata cache: 142 MiB after 450 batches of one
    project. A search of a million passages keeps about 220 MiB of index data.

    An S3 database gets its settings from ``storage_options`` and the ``AWS_*``
    variables, read here once (see ``object_store.s3_settings``).
    """
    if urlparse(uri).scheme in ("s3", "s3+ddb"):
        storage_options = s3_settings(storage_options or {}, os.environ)
    session = lancedb.Session(
        index_cache_size_bytes=index_cache_mb * _MIB,
        metadata_cache_size_bytes=metadata_cache_mb * _MIB,
    )
    return lancedb.connect(
        uri, storage_options=storage_options or None, session=session
    )


def connect_from(config: MLWorkerConfig) -> lancedb.DBConnection:
    """The database of these settings, with their object store and cache bounds."""
    options = config.vector_db_storage_options
    return connect(
        config.vector_db_uri,
        storage_options={k: v.get_secret_value() for k, v in options.items()},
        index_cache_mb=config.vector_db_index_cache_mb,
        metadata_cache_mb=config.vector_db_metadata_cache_mb,
    )
