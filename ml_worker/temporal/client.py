"""Reaching the Temporal server: for the workers, the CLI and the tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from ml_worker.config import MLWorkerConfig


async def connect(config: MLWorkerConfig) -> Client:
    return await Client.connect(
        config.temporal_address, namespace=config.temporal_namespace
    )


async def pollers(client: Client, task_queue: str, *, activities: bool) -> list[str]:
    """The identities of the workers polling ``task_queue`` for activities (or for
    workflows) in the last minutes."""
    kind = TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    if not activities:
        kind = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW
    answer = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=kind,
        )
    )
    return [p.identity for p in answer.pollers]
