"""Task arguments, checked by pydantic against the task function's own signature.

A task's arguments come as JSON from whoever submits it (Datashare, the CLI, a
script). Each is validated against the annotation of the task's parameter of that
name, and an argument the task does not take is refused: a bad task fails at once,
with an error naming every wrong argument, instead of deep inside the task. The
dependencies a worker hands a task (``INJECTED``) are never task arguments.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)
from pydantic_core import PydanticCustomError

from ml_worker.exceptions import InvalidArguments

# Handed to the tasks by the worker process, never taken from a task's arguments.
INJECTED = frozenset({"config", "es_client", "vector_db", "engine", "progress"})
# Shown of a wrong value in an error: enough to recognise it.
_SHOWN_CHARS = 80


def _not_blank(text: str) -> str:
    if not text.strip():
        raise PydanticCustomError("blank", "a query must not be blank")
    return text


def _one_or_many(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # One problem, not one for each member of the union.
    try:
        return handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "strings", "should be a string or a list of strings"
        ) from None


# The types of task arguments. Numbers are strict: a string of digits is refused
# rather than read as a number, as JSON numbers never are strings.
Positive = Annotated[int, Field(strict=True, gt=0)]
Number = Annotated[float, Field(strict=True)]
Queries = Annotated[
    list[Annotated[str, AfterValidator(_not_blank)]], Field(min_length=1)
]
# A value, or a list of values.
Strings = Annotated[list[str] | str | None, WrapValidator(_one_or_many)]


def validated(
    fn: Callable[..., Any], args: dict[str, Any], *, task: str | None = None
) -> dict[str, Any]:
    """``args`` validated as ``fn``'s task arguments, or InvalidArguments naming
    each problem; the dependencies ``fn`` takes are unknown arguments here.
    ``task``: the task the errors name, where it is not ``fn``'s name."""
    fn = inspect.unwrap(fn)
    try:
        values = _arguments_model(fn).model_validate(args)
    except ValidationError as e:
        raise InvalidArguments(_described(fn, e, task or fn.__name__)) from None
    return {name: getattr(values, name) for name in values.model_fields_set}


@functools.cache
def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A model of ``fn``'s task arguments: its parameters but the dependencies,
    with their annotations and defaults; it refuses any other argument."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {
        name: (hints[name], ... if p.default is p.empty else p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if name not in INJECTED
    }
    return create_model(
        f"{fn.__name__}_arguments",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def _described(fn: Callable[..., Any], error: ValidationError, task: str) -> str:
    problems = [e for e in error.errors() if e["type"] != "extra_forbidden"]
    unknown = [str(e["loc"][0]) for e in error.errors() if e not in problems]
    parts = [
        f"missing argument {_where(e['loc'])} for task {task}"
        if e["type"] == "missing"
        else f"invalid argument {_where(e['loc'])} for task {task}: {e['msg']},"
        f" got {_shown(e['input'])}"
        for e in problems
    ]
    if unknown:
        accepted = ", ".join(_arguments_model(fn).model_fields)
        parts.append(
            f"unknown argument(s) for task {task}: {', '.join(sorted(unknown))};"
            f" accepted: {accepted}"
        )
    return "; ".join(parts)


def _where(loc: tuple[int | str, ...]) -> str:
    """``queries[1]``: the argument, and the item of it that is wrong."""
    name, *items = loc
    return str(name) + "".join(f"[{i}]" for i in items)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
