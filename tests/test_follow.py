"""Following a task: how soon its end is seen, and what that costs the services."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

from icij_worker import Task, TaskState

from ml_worker.cli import follow
from ml_worker.constants import WorkerKind


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
    waits = list(itertools.islice(follow.poll_waits(), 8))
    assert waits == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]


async def test_a_quick_task_is_seen_done_without_asking_rabbitmq():
    asked = []
    watch = follow.QueueWatch(WorkerKind.SEARCH, lambda group: asked.append(group) or 1)
    client = _EndsAfter(4)
    started = time.monotonic()
    task = await follow.wait_for_task(client, "t", watch=watch)
    waited = time.monotonic() - started

    assert task.state is TaskState.DONE and client.polls == 4
    # 10 + 20 + 40 ms of waits, where fixed half seconds made 1.5 s.
    assert waited < 0.5
    assert asked == []
