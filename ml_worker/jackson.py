"""Jackson's type information, as Datashare's JSON carries it: read and written.

Datashare (Java) writes and reads its tasks with Jackson, which adds the Java type
of a value beside it (datashare-api ``JsonObjectMapper``, datashare-tasks ``Task``):

- an object gets an ``"@type"`` key: ``{"@type": "java.util.HashMap", "k": 1}``,
  ``{"@type": "org.icij.datashare.user.User", "id": ...}``;
- a list is wrapped with its class: ``["java.util.ArrayList", ["a", "b"]]``;
- strings, numbers, booleans and null are written as they are.

Where the types are written depends on the way (checked with Datashare 21.18's own
classes and mappers):

- a task's HTTP body (``PUT /api/task/{id}``) and ``GET /api/task/{id}``: the
  values of ``args`` only (``Task.args`` is ``@JsonTypeInfo(use = CLASS)``), the
  contents of those values plain. Datashare refuses a body whose list, object or
  ``user`` argument is untyped, and a ``user`` whose ``details`` are typed breaks
  its grant check (``User.isGranted``): ``typed_args`` writes exactly this;
- a task message on RabbitMQ (``TaskManagerAmqp``): every object and list, at every
  depth (its ``TYPE_INCLUSION_MAPPER``);
- a workflow's input on Temporal: no type at all.

``untyped`` reads any of them back as plain JSON values, which is how every client's
task arguments are read (``ml_worker.invoke``).
"""

from __future__ import annotations

import re
from typing import Any

TYPE_KEY = "@type"
USER_CLASS = "org.icij.datashare.user.User"
LIST_CLASS = "java.util.ArrayList"
MAP_CLASS = "java.util.LinkedHashMap"
# A Java class name as Jackson writes it: a package, then the class (nested ones
# after a $), or an array of them ("[Ljava.lang.String;").
_JAVA_CLASS = re.compile(r"^(\[L)?([a-z_][\w]*\.)+[A-Za-z_$][\w$]*;?$")


def untyped(value: Any) -> Any:
    """``value`` without Jackson's type information, at every depth: ``@type`` keys
    dropped, ``["<java.class.Name>", [...]]`` wrappers replaced by their list.

    A list of two items, a Java class name and a list, is always read as a
    wrapper: no task argument is such a list.
    """
    if isinstance(value, dict):
        return {k: untyped(v) for k, v in value.items() if k != TYPE_KEY}
    if isinstance(value, list):
        if is_list_wrapper(value):
            return [untyped(v) for v in value[1]]
        return [untyped(v) for v in value]
    return value


def is_list_wrapper(value: list) -> bool:
    """Whether ``value`` is Jackson's ``["<java.class.Name>", [...]]``."""
    return (
        len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], list)
        and _JAVA_CLASS.match(value[0]) is not None
    )


def typed_args(args: dict[str, Any]) -> dict[str, Any]:
    """A task's ``args`` as Datashare's task route reads them: each value with its
    type (``user`` as Datashare's ``User``, other objects as maps, lists as
    ``ArrayList``), their contents plain."""
    return {name: _typed_arg(name, value) for name, value in untyped(args).items()}


def _typed_arg(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return [LIST_CLASS, value]
    if isinstance(value, dict):
        java_class = USER_CLASS if name == "user" else MAP_CLASS
        return {TYPE_KEY: java_class, **value}
    return value
