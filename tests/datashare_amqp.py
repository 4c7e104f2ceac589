"""Datashare 21's side of RabbitMQ, for contract tests: how ``TaskManagerAmqp``
publishes a task and reads its workers' events, written from its source (ICIJ/
datashare, tag 21.18.0, module datashare-tasks, ``org.icij.datashare.asynctasks``)
and checked with its own classes and mappers (Jackson 2.22):

- ``TaskManagerAmqp.enqueue``: with ``--taskRoutingStrategy GROUP`` a task goes to
  the exchange ``exchangeMainTasks`` (direct) with the group, as given, as its
  routing key (``bus/amqp/AmqpQueue.TASK``, ``AmqpChannel.publish``: no message
  properties); with ``NAME``, the task's name;
- the message is ``Event.serialize()``, Datashare's ``TYPE_INCLUSION_MAPPER``
  (datashare-api ``json/JsonObjectMapper.java``): every object with an ``@type``,
  every list (and the task's ``createdAt``, a ``java.util.Date``) wrapped with its
  class, strings, numbers and booleans as they are;
- ``TaskManagerAmqp``'s consumer reads the workers' events from the exchange
  ``exchangeManagerEvents`` (routing key ``routingKeyManagerEvents``, queue
  ``MANAGER_EVENT``) with the same mapper, and drops to its dead-letter queue any
  it cannot read (``AmqpChannel.consume``). ``datashare_refuses`` tells why it
  would not read an event, as Jackson did on the events icij-worker 0.19.5 sends.

Only as wide as ml-worker's tests use it; nothing here is ml-worker's code.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import aio_pika

TASKS_EXCHANGE = "exchangeMainTasks"
EVENTS_EXCHANGE = "exchangeManagerEvents"
EVENTS_ROUTING_KEY = "routingKeyManagerEvents"
USER_CLASS = "org.icij.datashare.user.User"
# The classes Jackson names for what Datashare's task route parsed: the args map
# (made unmodifiable by Task's constructor), a user's details (by User's), and
# any other object or list.
ARGS_CLASS = "java.util.Collections$UnmodifiableMap"
MAP_CLASS = "java.util.LinkedHashMap"
LIST_CLASS = "java.util.ArrayList"
DATE_CLASS = "java.util.Date"
# What a task's result may be for Datashare to read it: TaskResult.value is typed
# by name, and only scalars go without one (its registered names are Datashare's
# own result classes).
_SCALARS = (str, int, float, bool)


def _typed(value: Any, java_class: str = MAP_CLASS) -> Any:
    """``value`` as the TYPE_INCLUSION_MAPPER writes it."""
    if isinstance(value, list):
        return [LIST_CLASS, [_typed(v) for v in value]]
    if isinstance(value, dict):
        typed = {"@type": java_class}
        for key, item in value.items():
            if key == "user" and isinstance(item, dict):
                typed[key] = _typed(item, USER_CLASS)
            elif key == "details" and java_class == USER_CLASS:
                typed[key] = _typed(item, ARGS_CLASS)
            else:
                typed[key] = _typed(item)
        return typed
    return value


def task_message(
    task_id: str, name: str, args: dict[str, Any], *, created_at: datetime
) -> dict[str, Any]:
    """The task message ``TaskManagerAmqp`` publishes for a task created through
    its route without ``retriesLeft`` (then 0)."""
    return {
        "@type": "Task",
        "id": task_id,
        "name": name,
        "state": "QUEUED",
        "progress": 0.0,
        "createdAt": [DATE_CLASS, int(created_at.timestamp() * 1000)],
        "retriesLeft": 0,
        "args": _typed(args, ARGS_CLASS),
    }


async def publish(
    channel: aio_pika.abc.AbstractChannel, routing_key: str, message: dict
) -> None:
    """``AmqpChannel.publish``: the message's bytes, no properties."""
    exchange = await channel.get_exchange(TASKS_EXCHANGE)
    body = json.dumps(message, separators=(",", ":")).encode()
    await exchange.publish(aio_pika.Message(body), routing_key=routing_key)


async def event_queue(
    channel: aio_pika.abc.AbstractChannel,
) -> aio_pika.abc.AbstractQueue:
    """A queue of its own receiving every event the workers send Datashare's
    consumer (bound as ``MANAGER_EVENT`` is), beside the task service's."""
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(EVENTS_EXCHANGE, routing_key=EVENTS_ROUTING_KEY)
    return queue


def datashare_refuses(event: dict[str, Any]) -> str | None:
    """Why Datashare's consumer would not read ``event`` (it reads it as a
    ``TaskEvent`` with its TYPE_INCLUSION_MAPPER); None when it would."""
    created_at = event.get("createdAt")
    if created_at is not None and not (
        isinstance(created_at, list) and created_at[:1] == [DATE_CLASS]
    ):
        return f"createdAt {created_at!r} is not a typed java.util.Date"
    result = event.get("result")
    if isinstance(result, dict):
        value = result.get("value")
        if value is not None and not isinstance(value, _SCALARS):
            return f"result {value!r} has no type Datashare registered"
    error = event.get("error")
    if isinstance(error, dict):
        stacktrace = error.get("stacktrace")
        if isinstance(stacktrace, list) and stacktrace[:1] != [LIST_CLASS]:
            return "the error's stacktrace is not a typed list"
    return None
