"""Runs the pipeline's services on one machine, for the demo, the tests and the
benchmarks.

The pieces are the real ones: the machine's RabbitMQ and PostgreSQL, icij-worker's
HTTP task service started with its CLI, worker pools started with ``ml-worker
workers start``, and either the configured Elasticsearch or an in-memory emulator
of its API. Each run gets its own RabbitMQ virtual host, so it never consumes
another run's tasks. Everything started here is stopped on exit, Ctrl-C included.

``processes`` starts and stops them, ``services`` runs what the workers use,
``pools`` the workers themselves.
"""

from ml_worker_dev.local_stack.pools import (
    temporal_worker_pool,
    wait_for_temporal_workers,
    wait_for_workers,
    worker_pool,
)
from ml_worker_dev.local_stack.processes import environment, free_port
from ml_worker_dev.local_stack.services import (
    TASK_STORAGE_CONNECTIONS,
    Postgres,
    RabbitMQ,
    es_emulator,
    rabbitmq_from_env,
    s3_emulator,
    task_service,
    task_stack,
    temporal_server,
)

__all__ = [
    "TASK_STORAGE_CONNECTIONS",
    "Postgres",
    "RabbitMQ",
    "environment",
    "es_emulator",
    "free_port",
    "rabbitmq_from_env",
    "s3_emulator",
    "task_service",
    "task_stack",
    "temporal_server",
    "temporal_worker_pool",
    "wait_for_temporal_workers",
    "wait_for_workers",
    "worker_pool",
]
