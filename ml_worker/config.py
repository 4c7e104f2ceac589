"""The worker's own settings (RabbitMQ settings are icij-worker's, see its WorkerConfig).

Every field can be set from the environment with the ``ML_WORKER_`` prefix
(``ML_WORKER_ES_ADDRESS=http://es:9200``) or from a JSON file given to the workers
as icij-worker's ``app_bootstrap_config_path``; the environment wins over the file.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, SecretStr
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    JsonConfigSettingsSource,
    SettingsConfigDict,
)

from ml_worker.constants import AUTO_MODEL

# Bounds of LanceDB's caches in each process (its own defaults: 6 GiB and 1 GiB).
VECTOR_DB_INDEX_CACHE_MB = 1024
VECTOR_DB_METADATA_CACHE_MB = 256


class EngineName(StrEnum):
    """What carries the tasks to the workers."""

    ICIJ = "icij"  # icij-worker over RabbitMQ: Datashare before 20
    TEMPORAL = "temporal"  # Temporal: Datashare 20 and later


class TaskServiceKind(StrEnum):
    ICIJ = "icij"
    DATASHARE = "datashare"


class MLWorkerConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ML_WORKER_", extra="forbid", frozen=True
    )

    log_level: str = Field(default="INFO", description="Log level of ml_worker loggers")

    es_address: str = Field(
        default="http://localhost:9200",
        description="Elasticsearch (7.x API) address holding Datashare's project indices",
    )
    es_username: str | None = Field(default=None, description="Elasticsearch user")
    es_password: SecretStr | None = Field(
        default=None, description="Elasticsearch password"
    )
    es_timeout_s: float = Field(
        default=30.0, description="Elasticsearch request timeout"
    )
    es_retry_s: float = Field(
        default=60.0,
        description="How long Elasticsearch calls are retried, with backoff, before"
        " the task fails (and is retried by the worker)",
    )
    es_page_size: PositiveInt = Field(
        default=10_000,
        description="Document ids read per Elasticsearch page when listing a project;"
        " each page is a search over the whole index, so fewer, larger pages list it"
        " faster (at most the index's max_result_window, 10,000 by default)",
    )
    gone_check_chunk_size: PositiveInt = Field(
        default=10_000,
        description="Rows of a project's table read at a time when looking for"
        " documents gone from the index; each chunk's ids are looked up with one"
        " Elasticsearch query (at most the index's max_result_window, 10,000 by"
        " default)",
    )

    engine: EngineName = Field(
        default=EngineName.ICIJ,
        description="Task engine: `icij` (icij-worker over RabbitMQ, Datashare before"
        " 20) or `temporal` (a Temporal server, Datashare 20 and later)",
    )
    temporal_address: str = Field(
        default="localhost:7233", description="Temporal server (host:port)"
    )
    temporal_namespace: str = Field(
        default="datashare-default",
        description="Temporal namespace of the workflows (Datashare's default)",
    )

    task_service: TaskServiceKind = Field(
        default=TaskServiceKind.ICIJ,
        description="Task API used to create child tasks: `icij` (icij-worker's HTTP "
        "service) or `datashare`",
    )
    task_service_url: str = Field(
        default="http://localhost:8080", description="Task API base URL"
    )
    task_service_user: str | None = Field(
        default=None, description="Basic-auth user for the task API"
    )
    task_service_password: SecretStr | None = Field(
        default=None, description="Basic-auth password for the task API"
    )
    task_service_api_key: SecretStr | None = Field(
        default=None,
        description="Datashare API key, sent as `Authorization: bearer <key>`",
    )
    task_service_cookie: SecretStr | None = Field(
        default=None, description="Datashare session cookie value"
    )
    task_service_cookie_name: str = Field(
        default="_ds_session_id",
        description="Name of Datashare's session cookie",
    )

    vector_db_uri: str = Field(
        default="data/vectors",
        description="LanceDB database: a local directory or any LanceDB URI",
    )
    vector_db_storage_options: dict[str, SecretStr] = Field(
        default={},
        description="Options of the vector database's object store, handed to LanceDB"
        " (for `s3://`: `aws_endpoint`, `aws_region`, `aws_access_key_id`,"
        " `aws_secret_access_key`, `allow_http`...); a JSON object in the"
        " environment. Its values are secrets: never logged",
    )
    vector_db_index_cache_mb: PositiveInt = Field(
        default=VECTOR_DB_INDEX_CACHE_MB,
        description="Memory each process may keep of the tables' indices: searches"
        " and writes re-read less from disk",
    )
    vector_db_metadata_cache_mb: PositiveInt = Field(
        default=VECTOR_DB_METADATA_CACHE_MB,
        description="Memory each process may keep of the tables' metadata",
    )
    model: str = Field(
        default=AUTO_MODEL,
        description="Model of new project tables: `auto` (`english` for a project"
        " with at least 90% of its documents in English, `multilingual` for any"
        " other), `english`, `multilingual`, or a sentence-transformers hub id or"
        " folder",
    )
    device: str = Field(
        default="auto",
        description="Torch device for the model: `auto` (CUDA when present), `cpu`, "
        "`cuda`, `cuda:1`...",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="The model's number format: `auto` (bfloat16 where the device "
        "computes it natively: CPUs with AVX512-BF16 or AMX, recent CUDA GPUs; "
        "float32 elsewhere), `float32` or `bfloat16`. bfloat16 vectors agree with "
        "float32 ones to a cosine of 0.9999",
    )
    query_encoder: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="What embeds search queries: `onnx` (the model's tokenizer, its "
        "ONNX export run by ONNX Runtime on the CPU, its pooling in numpy: a search "
        "worker never loads torch), `torch` (the model itself, on its device: a search "
        "worker then holds torch and the model, about 1 GiB more) or `auto` (`onnx`, "
        "or the model itself, with a warning, for a model `onnx` cannot embed as it "
        "does). `onnx` embeds a query in half the time; its vectors agree with the "
        "model's to a cosine of 0.998",
    )
    vectorize_batch_size: PositiveInt = Field(
        default=64, description="Documents per vectorize_docs batch"
    )
    batches_in_flight: PositiveInt | None = Field(
        default=None,
        description="Batches of one vectorization queued or running at once; unset:"
        " one more than the vectorizing workers taking batches when the run starts"
        " (8 when the engine does not tell). Another project's batches queue beside"
        " this many rather than behind all of a large project's",
    )
    max_content_chars: PositiveInt = Field(
        default=2_000_000,
        description="Characters of a document's content that are vectorized; the"
        " rest of a longer document is left out, with a warning",
    )
    embed_batch_size: PositiveInt = Field(
        default=64, description="Passages per model call"
    )
    torch_threads: PositiveInt | None = Field(
        default=None,
        description="CPU threads of each worker process's model and query encoder;"
        " unset: one per core. With several workers on one machine, cores / workers",
    )

    @classmethod
    def from_file(cls, path: Path) -> MLWorkerConfig:
        """Settings from a JSON file, overridden by the environment.

        Read by pydantic-settings' own sources. The file's path is known only at
        run time, so the sources are built here rather than declared in
        ``settings_customise_sources``.
        """
        from_file = JsonConfigSettingsSource(cls, json_file=path)()
        from_env = EnvSettingsSource(cls)()
        return cls(**{**from_file, **from_env})
