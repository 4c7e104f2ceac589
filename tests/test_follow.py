"""Following a task: how soon its end is seen, and what that costs the services."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from icij_worker import Task, TaskState

from ml_worker import task_client
from ml_worker.cli import follow
from ml_worker.constants import WorkerKind

pytestmark = pytest.mark.unit


class _EndsAfter:
    """A task service whose one task is done at its ``n``-th poll."""

    def __init__(self, n: int):
        self._left, self.polls = n, 0

    async def get_task(self, task_id: str) -> Task:
        self.polls += 1
        self._left -= 1
        state = TaskState.DONE if self._left <= 0 else TaskState.QUEUED
        return Task(
            id=task_id,
            name="find_most_similar",
            args={},
            state=state,
            created_at=datetime.now(UTC),
        )


def test_polls_start_at_ten_ms_and_double_up_to_half_a_second():
    waits = list(itertools.islice(task_client.poll_waits(), 8))
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]


async def test_a_task_answered_soon_is_seen_done_without_asking_the_engine(
    monkeypatch,
):
    asked = []

    async def workers(kind: WorkerKind) -> int:
        asked.append(kind)
        return 1

    # However slow this machine, the first probe stays far off.
    monkeypatch.setattr(follow, "FIRST_PROBE_AFTER_S", 3600.0)
    watch = follow.QueueWatch(WorkerKind.SEARCH, workers)
    client = _EndsAfter(4)

    task = await follow.follow_task(client, "t", watch=watch)  # type: ignore[arg-type]

    assert task.state is TaskState.DONE and client.polls == 4
    assert asked == []
