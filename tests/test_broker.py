"""What the CLI reads of icij-worker's RabbitMQ settings and queues, without it."""

from __future__ import annotations

import pytest
from icij_worker.routing_strategy import RoutingStrategy
from icij_worker.worker.amqp import AMQPWorkerConfig

from ml_worker.constants import WorkerKind
from ml_worker.icij.broker import RabbitMQSettings, task_queue_name


@pytest.mark.parametrize(
    "env",
    [
        {},
        {
            "ICIJ_WORKER_RABBITMQ_HOST": "rabbit.example",
            "ICIJ_WORKER_RABBITMQ_PORT": "5673",
            "ICIJ_WORKER_RABBITMQ_MANAGEMENT_PORT": "15673",
            "ICIJ_WORKER_RABBITMQ_USER": "ml",
            "ICIJ_WORKER_RABBITMQ_PASSWORD": "secret",
            "ICIJ_WORKER_RABBITMQ_VHOST": "datashare",
        },
    ],
    ids=["defaults", "environment"],
)
def test_rabbitmq_settings_are_icij_workers(monkeypatch, env):
    for name in RabbitMQSettings.model_fields:
        monkeypatch.delenv(f"ICIJ_WORKER_{name.upper()}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Set by deployments beside the RabbitMQ settings: not ours to refuse.
    monkeypatch.setenv("ICIJ_WORKER_TYPE", "amqp")

    ours, icij = RabbitMQSettings(), AMQPWorkerConfig()

    for name in RabbitMQSettings.model_fields:
        assert getattr(ours, name) == getattr(icij, name), name


@pytest.mark.parametrize("kind", list(WorkerKind))
def test_task_queue_is_the_one_icij_worker_routes_the_group_to(kind):
    expected = RoutingStrategy.amqp_task_routing(kind.group).queue_name

    assert task_queue_name(kind.group) == expected
