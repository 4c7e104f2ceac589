"""Reaching the Temporal server: for the workers, the CLI and the tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from ml_worker.config import MLWorkerConfig
from ml_worker.constants import MAX_PROGRESS_ATTRIBUTE, PROGRESS_ATTRIBUTE
from ml_worker.exceptions import MissingSearchAttributes

# Where the vectorization workflow keeps its progress, as Datashare reads it.
_PROGRESS_ATTRIBUTES = (PROGRESS_ATTRIBUTE, MAX_PROGRESS_ATTRIBUTE)


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


async def check_search_attributes(client: Client) -> None:
    """Raise MissingSearchAttributes unless the client's namespace has the Double
    search attributes the vectorization workflow keeps its progress in. Without
    them every task of that workflow fails, and Temporal retries it for ever."""
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    double = IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE
    missing = [
        name
        for name in _PROGRESS_ATTRIBUTES
        if answer.custom_attributes.get(name) != double
    ]
    if missing:
        create = "; ".join(
            f"temporal operator search-attribute create -n {client.namespace}"
            f" --name {name} --type Double"
            for name in missing
        )
        msg = (
            f"Temporal namespace {client.namespace} lacks the Double search"
            f" attribute(s) {', '.join(missing)} where vectorizations keep their"
            f" progress: create them with `{create}`"
        )
        raise MissingSearchAttributes(msg)
