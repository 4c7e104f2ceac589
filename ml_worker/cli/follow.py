"""Submitting tasks through the task API and following them to their end.

Shared by the commands and the demo, so a run looks the same wherever it starts.
A vectorization is one task on every engine: it follows its own batches and
reports the share of the project's documents done, then its summary
(``fanout.VectorizationSummary``). On a terminal its progress is a bar; in a log
or a pipe, a line every ``line_every_s``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from icij_worker import Task, TaskError, TaskState
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ml_worker.cli.errors import CLIError, next_step, remote_error_code
from ml_worker.cli.output import duration, err, out, printable, shown
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    FIND_MOST_SIMILAR,
    FIND_SIMILAR_DOCUMENTS,
    TASK_KINDS,
    WorkerKind,
    task_group,
)
from ml_worker.task_client import TaskClient, wait_for_task

QUEUED_HINT_AFTER_S = 10.0
# The engine is asked at most this often how many workers take a kind's tasks.
# Tasks that wait with none and do not move for NO_CONSUMER_WARNING_S are told
# so: otherwise a run whose workers all died only sees its ETA rise. Longer than
# the 35 s RabbitMQ's count lagged here after the workers of a vhost were replaced.
CONSUMERS_POLL_S = 5.0
NO_CONSUMER_WARNING_S = 60.0
# Nor is it asked for a task answered within this time, as a search is: a first
# call to RabbitMQ's management API took 0.8 s here, later ones 30 to 90 ms.
FIRST_PROBE_AFTER_S = 1.0

# How many workers take a kind's tasks now; None when unknown.
WorkerCount = Callable[[WorkerKind], Awaitable[int | None]]


class QueueWatch:
    """The workers of ``kind`` taking their tasks, as far as the engine tells; says
    nothing more than the task states without it."""

    def __init__(self, kind: WorkerKind, workers: WorkerCount | None = None):
        self._kind, self._workers = kind, workers
        self.count: int | None = None
        self._next_probe = time.monotonic() + FIRST_PROBE_AFTER_S
        self._idle_since: float | None = None
        self._warned = False

    async def probe(self) -> int | None:
        """The worker count, asked again once CONSUMERS_POLL_S have passed."""
        now = time.monotonic()
        if self._workers is None or now < self._next_probe:
            return self.count
        self._next_probe = now + CONSUMERS_POLL_S
        self.count = await self._workers(self._kind)
        if self.count != 0:
            self._idle_since, self._warned = None, False
        elif self._idle_since is None:
            self._idle_since = now
        return self.count

    def saw_progress(self) -> None:
        """Tasks moved on: the queue is consumed, whatever the count says.

        RabbitMQ's statistics lag after consumers come and go: a pool restarted in
        a vhost showed 0 consumers for 35 s here while its workers ran tasks.
        """
        if self._idle_since is not None:
            self._idle_since = time.monotonic()

    async def warn_if_idle(self, waiting: str) -> None:
        """Warn, once until workers come back, that no worker takes the tasks."""
        await self.probe()
        if self._idle_since is None or self._warned:
            return
        idle_s = time.monotonic() - self._idle_since
        if idle_s >= NO_CONSUMER_WARNING_S:
            err.print(
                f"warning: no {self._kind} worker has taken a task for"
                f" {idle_s:.0f} s while {waiting}: {self._start_hint()}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            self._warned = True

    def why_queued(self) -> str:
        """Why a task is still queued; counts as the warning when none consumes."""
        if self.count is None:
            return f"is a {self._kind} worker running? ({self._start_hint()})"
        if self.count == 0:
            self._warned = True
            return (
                f"no worker takes the {self._kind.group} group's tasks:"
                f" {self._start_hint()}"
            )
        workers = "1 worker is" if self.count == 1 else f"{self.count} workers are"
        return f"{workers} busy with earlier tasks"

    def _start_hint(self) -> str:
        return f"start workers with `ml-worker workers start --kind {self._kind}`"


async def follow_task(
    client: TaskClient,
    task_id: str,
    *,
    on_poll: Callable[[Task], None] | None = None,
    watch: QueueWatch | None = None,
) -> Task:
    """The task once it is done, failed or cancelled; with a ``watch``, a task
    that waits long is told about on stderr."""
    waited_since, hinted = time.monotonic(), False
    seen: tuple[TaskState, float | None] | None = None

    async def polled(task: Task) -> None:
        nonlocal hinted, seen
        if on_poll is not None:
            on_poll(task)
        if watch is None:
            return
        if (task.state, task.progress) != seen:
            seen = (task.state, task.progress)
            watch.saw_progress()
        await watch.warn_if_idle(f"task {task_id} waits")
        queued_for = time.monotonic() - waited_since
        if (
            task.state is TaskState.QUEUED
            and queued_for > QUEUED_HINT_AFTER_S
            and not hinted
        ):
            err.print(
                shown(
                    f"task {task_id} is still queued after {queued_for:.0f} s:"
                    f" {watch.why_queued()}"
                ),
                soft_wrap=True,
            )
            hinted = True

    return await wait_for_task(client, task_id, on_poll=polled)


async def raise_if_failed(client: TaskClient, task: Task) -> None:
    if task.state is TaskState.ERROR:
        error = await last_error(client, task.id)
        name = error.name if error else ""
        step = next_step(name, task.args or {})
        then = f"; next: {step}" if step else ""
        raise CLIError(
            f"task {task.id} failed: {describe(error)}{then}",
            remote_error_code(name),
        )
    if task.state is TaskState.CANCELLED:
        raise CLIError(f"task {task.id} was cancelled")


async def last_error(client: TaskClient, task_id: str) -> TaskError | None:
    errors = await client.get_task_errors(task_id)
    return errors[-1].error if errors else None


def describe(error: TaskError | None) -> str:
    """A task's error, printable: its message may quote documents."""
    if error is None:
        return "no error recorded"
    return printable(f"{error.name}: {error.message}")


async def run_task(
    client: TaskClient,
    name: str,
    args: dict[str, Any],
    *,
    workers: WorkerCount | None = None,
) -> Any:
    """Submit a task, wait for it and return its result."""
    task_id = await client.create_task(name, args, group=task_group(name))
    watch = QueueWatch(TASK_KINDS[name], workers)
    with err.status(shown(f"{name} {task_id}: waiting for a worker…")) as status:
        task = await follow_task(
            client,
            task_id,
            on_poll=lambda t: status.update(
                shown(f"{name} {task_id}: {t.state.value.lower()}…")
            ),
            watch=watch,
        )
    await raise_if_failed(client, task)
    return await client.get_task_result(task_id, done=True)


async def submit_vectorization(client: TaskClient, project: str, **options: Any) -> str:
    """Submit create_vectorization_tasks; unset options are left to the workers."""
    args = {"project": project, **_given(options)}
    group = task_group(CREATE_VECTORIZATION_TASKS)
    return await client.create_task(CREATE_VECTORIZATION_TASKS, args, group=group)


def _given(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


@dataclass
class VectorizationRun:
    project: str
    task_id: str
    total: int | None = None  # the project's documents, when the command counted them
    progress: float = 0.0  # the share of them done
    summary: dict[str, Any] = field(default_factory=dict)  # the task's result
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def stats(self) -> str:
        """``45% · 2250/5000 documents · 12.3 documents/s · 3:02 left``."""
        parts = [f"{self.progress:.0%}"]
        if self.total is not None:
            done = round(self.progress * self.total)
            rate = done / self.elapsed_s if self.elapsed_s else 0.0
            parts += [f"{done}/{self.total} documents", f"{rate:.1f} documents/s"]
        if 0 < self.progress < 1:
            left = self.elapsed_s / self.progress * (1 - self.progress)
            parts.append(f"{duration(left)} left")
        return " · ".join(parts)


async def follow_vectorization(
    client: TaskClient,
    task_id: str,
    project: str,
    *,
    total: int | None = None,
    workers: WorkerCount | None = None,
    line_every_s: float,
) -> VectorizationRun:
    """Follow a create_vectorization_tasks run to its end, showing its progress
    (``line_every_s``: between two progress lines, where there is no terminal)."""
    run = VectorizationRun(project, task_id, total=total)
    watch = QueueWatch(WorkerKind.FANOUT, workers)
    with _ProgressDisplay(run, line_every_s) as show:

        def polled(task: Task) -> None:
            run.progress = task.progress or 0.0
            show()

        task = await follow_task(client, task_id, on_poll=polled, watch=watch)
    await raise_if_failed(client, task)
    result = await client.get_task_result(task_id, done=True)
    if not isinstance(result, dict) or "batches" not in result:
        raise CLIError(
            f"task {task_id} did not return a vectorization summary: are the"
            " workers of an older version?"
        )
    run.summary = result
    return run


class _ProgressDisplay:
    """A run's progress: a bar on a terminal, a line every ``line_every_s``
    elsewhere (a log, a pipe), where a bar would print nothing until it ends."""

    def __init__(self, run: VectorizationRun, line_every_s: float):
        self._run, self._every_s = run, line_every_s
        self._bar: Progress | None = None
        self._next_line = time.monotonic() + line_every_s

    def __enter__(self) -> Callable[[], None]:
        if err.is_terminal:
            columns = (
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[stats]}"),
            )
            # Transient: the summary printed afterwards replaces the bar.
            self._bar = Progress(*columns, console=err, transient=True)
            self._bar.__enter__()
            self._bar_id = self._bar.add_task(
                shown(f"Vectorizing {self._run.project}").plain, total=1.0, stats=""
            )
        return self._show

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        elif exc_info[0] is None:
            self._line()

    def _show(self) -> None:
        if self._bar is not None:
            self._bar.update(
                self._bar_id, completed=self._run.progress, stats=self._run.stats()
            )
        elif time.monotonic() >= self._next_line:
            self._next_line = time.monotonic() + self._every_s
            self._line()

    def _line(self) -> None:
        err.print(
            shown(f"vectorizing {self._run.project}: {self._run.stats()}"),
            soft_wrap=True,
        )


def print_vectorization_summary(run: VectorizationRun) -> None:
    s = run.summary
    if not s["documents"] and not s["removed"]:
        out.print(shown(f"Project {run.project} has no documents to vectorize."))
        return
    rate = s["documents"] / run.elapsed_s if run.elapsed_s else 0.0
    out.print(
        shown(
            f"Project {run.project}: {s['documents']} documents in {s['batches']}"
            f" batches: {s['new']} new, {s['changed']} changed, {s['unchanged']}"
            f" unchanged, {s['missing']} gone while it ran, {s['failed']} failed;"
            f" {s['removed']} removed (no longer in the index);"
            f" {duration(run.elapsed_s)}, {rate:.1f} documents/s;"
            f" model {s['model']} ({s['model_choice']})."
        ),
        soft_wrap=True,
    )
    for failure in s["failures"]:
        out.print(shown(f"  {failure}"), soft_wrap=True)
    if s["failed"]:
        raise CLIError(
            f"{s['failed']} of {s['documents']} documents of {run.project} were not"
            " vectorized"
        )


async def search_project(
    client: TaskClient,
    project: str,
    queries: list[str],
    *,
    workers: WorkerCount | None = None,
    **options: Any,
) -> list[list[dict]]:
    """find_most_similar's ranked documents for each query; unset options left out."""
    args = {"project": project, "queries": list(queries), **_given(options)}
    return await run_task(client, FIND_MOST_SIMILAR, args, workers=workers)


async def similar_documents(
    client: TaskClient,
    project: str,
    doc_id: str,
    *,
    workers: WorkerCount | None = None,
    **options: Any,
) -> list[dict]:
    """find_similar_documents' documents most similar to ``doc_id``."""
    args = {"project": project, "doc_id": doc_id, **_given(options)}
    return await run_task(client, FIND_SIMILAR_DOCUMENTS, args, workers=workers)
