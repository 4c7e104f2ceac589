"""Datashare's Jackson-typed JSON, read and written, on the exact shapes Datashare
21.18 produces and accepts (written by its own classes and mappers: see
``ml_worker.jackson``)."""

from __future__ import annotations

import pytest

from ml_worker import tasks
from ml_worker.exceptions import InvalidArguments, ProjectNotGranted
from ml_worker.invoke import task_arguments
from ml_worker.jackson import typed_args, untyped

pytestmark = pytest.mark.unit

# The args of a find_most_similar task as TaskManagerAmqp publishes them (its
# TYPE_INCLUSION_MAPPER): typed at every depth.
AMQP_ARGS = {
    "@type": "java.util.Collections$UnmodifiableMap",
    "project": "p1",
    "defaultProject": "p1",
    "queries": ["java.util.ArrayList", ["a", "b"]],
    "n_similar": 5,
    "user": {
        "@type": "org.icij.datashare.user.User",
        "id": "alice",
        "name": "Alice",
        "email": "a@x.org",
        "provider": "oauth",
        "details": {
            "@type": "java.util.Collections$UnmodifiableMap",
            "uid": "alice",
            "groups_by_applications": {
                "@type": "java.util.LinkedHashMap",
                "datashare": ["java.util.ArrayList", ["p1", "p2"]],
            },
        },
    },
}
# The same args as the task route accepts them, and as GET /api/task/{id} answers
# them: the values typed, their contents plain.
HTTP_ARGS = {
    "project": "p1",
    "defaultProject": "p1",
    "queries": ["java.util.ArrayList", ["a", "b"]],
    "n_similar": 5,
    "user": {
        "@type": "org.icij.datashare.user.User",
        "id": "alice",
        "name": "Alice",
        "email": "a@x.org",
        "provider": "oauth",
        "details": {
            "uid": "alice",
            "groups_by_applications": {"datashare": ["p1", "p2"]},
        },
    },
}
# And as a workflow's input on Temporal: no type at all.
PLAIN_ARGS = {
    "project": "p1",
    "defaultProject": "p1",
    "queries": ["a", "b"],
    "n_similar": 5,
    "user": {
        "id": "alice",
        "name": "Alice",
        "email": "a@x.org",
        "provider": "oauth",
        "details": {
            "uid": "alice",
            "groups_by_applications": {"datashare": ["p1", "p2"]},
        },
    },
}


@pytest.mark.parametrize("args", [AMQP_ARGS, HTTP_ARGS, PLAIN_ARGS])
def test_every_way_datashare_sends_args_reads_the_same(args):
    assert untyped(args) == PLAIN_ARGS


def test_typed_args_are_what_the_task_route_accepts():
    assert typed_args(PLAIN_ARGS) == HTTP_ARGS
    # Typed twice, the same: types already there are not nested.
    assert typed_args(AMQP_ARGS) == HTTP_ARGS


def test_other_objects_and_empty_lists_are_typed():
    typed = typed_args({"opts": {"k": [1, 2]}, "docs": [], "n": None, "x": 1.5})

    assert typed == {
        "opts": {"@type": "java.util.LinkedHashMap", "k": [1, 2]},
        "docs": ["java.util.ArrayList", []],
        "n": None,
        "x": 1.5,
    }


def test_wrappers_of_other_classes_and_arrays_are_read():
    assert untyped(["java.util.Arrays$ArrayList", ["a"]]) == ["a"]
    assert untyped(["[Ljava.lang.String;", ["a", "b"]]) == ["a", "b"]
    assert untyped(["java.util.ArrayList", [["java.util.ArrayList", [1]]]]) == [[1]]


@pytest.mark.parametrize(
    "value",
    [
        ["my.tag", "other"],  # dotted strings: a list of two tags
        ["java.util.ArrayList", "a"],  # no list in second place
        ["Not a class", ["a"]],
        ["java.util.ArrayList", ["a"], ["b"]],
        ["ArrayList", ["a"]],  # no package: not a class Jackson names
    ],
)
def test_plain_lists_are_kept(value):
    assert untyped(value) == value


def test_the_grant_check_reads_a_typed_user():
    assert task_arguments(tasks.find_most_similar, AMQP_ARGS)["queries"] == ["a", "b"]

    not_granted = {**AMQP_ARGS, "project": "p9", "defaultProject": "p9"}
    with pytest.raises(
        ProjectNotGranted, match='user "alice" is not granted project "p9"'
    ):
        task_arguments(tasks.find_most_similar, not_granted)


def test_a_typed_argument_is_checked_as_its_value():
    args = {**AMQP_ARGS, "queries": ["java.util.ArrayList", [""]]}

    with pytest.raises(InvalidArguments, match=r"invalid argument queries\[0\]"):
        task_arguments(tasks.find_most_similar, args)
