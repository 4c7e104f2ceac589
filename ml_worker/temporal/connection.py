"""Reaching the Temporal server: for the workers, the CLI and the tests."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from ml_worker.config import MLWorkerConfig
from ml_worker.constants import (
    MAX_PROGRESS_ATTRIBUTE,
    PROGRESS_ATTRIBUTE,
    USER_ID_ATTRIBUTE,
)
from ml_worker.exceptions import MissingSearchAttributes

# The custom search attributes Datashare sets when it starts a task (its
# TaskManagerTemporal): the progress the vectorization workflow updates, and the
# task's user. A namespace without them refuses such a start.
SEARCH_ATTRIBUTES = {
    PROGRESS_ATTRIBUTE: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    MAX_PROGRESS_ATTRIBUTE: IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    USER_ID_ATTRIBUTE: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}


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
    """Raise MissingSearchAttributes unless the client's namespace has the search
    attributes of ``SEARCH_ATTRIBUTES``: without them Datashare cannot start a task
    for a user, and a vectorization workflow fails at every step."""
    answer = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    missing = {
        name: kind
        for name, kind in SEARCH_ATTRIBUTES.items()
        if answer.custom_attributes.get(name) != kind
    }
    if missing:
        create = "; ".join(
            f"temporal operator search-attribute create -n {client.namespace}"
            f" --name {name} --type {attribute_type_name(kind)}"
            for name, kind in missing.items()
        )
        msg = (
            f"Temporal namespace {client.namespace} lacks the search attribute(s)"
            f" {', '.join(missing)} that Datashare's tasks keep their user and"
            f" progress in: create them with `{create}`"
        )
        raise MissingSearchAttributes(msg)


def attribute_type_name(kind: IndexedValueType.ValueType) -> str:
    """``Double`` for INDEXED_VALUE_TYPE_DOUBLE, as the Temporal CLI names it."""
    return IndexedValueType.Name(kind).removeprefix("INDEXED_VALUE_TYPE_").title()
