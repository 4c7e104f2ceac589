"""Submitting tasks through the task API and following them to their end.

Shared by the commands and the demo, so a run looks the same wherever it starts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from icij_worker import Task, TaskError, TaskState
from icij_worker.objects import READY_STATES
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from ml_worker.cli.errors import CLIError, next_step, remote_error_code
from ml_worker.cli.output import duration, err, out, printable, shown
from ml_worker.constants import (
    CREATE_VECTORIZATION_TASKS,
    FIND_MOST_SIMILAR,
    TASK_KINDS,
    WorkerKind,
    task_group,
)
from ml_worker.task_client import TaskClient

# Polls come soon after a submission, then further apart: a search is answered in
# about 100 ms here, while a fixed 0.5 s between polls made it wait 0.5 s at least;
# a long run still costs the service at most 2 requests a second.
FIRST_POLL_S = 0.01
POLL_S = 0.5
# Children polled per round: a run's batches are consumed in creation order, so the
# oldest unfinished ones tell where the run stands, whatever its size.
POLL_WINDOW = 32
QUEUED_HINT_AFTER_S = 10.0
# RabbitMQ's management API is asked at most this often how many workers consume
# the task queue. Tasks that wait with none and do not move for
# NO_CONSUMER_WARNING_S are told so: otherwise a run whose workers all died only
# sees its ETA rise. Longer than the 35 s the API's count lagged here after the
# workers of a vhost were replaced.
CONSUMERS_POLL_S = 5.0
NO_CONSUMER_WARNING_S = 60.0
# Nor is it asked for a task answered within this time, as a search is: a first
# call to it took 0.8 s here, later ones 30 to 90 ms on a busy machine.
FIRST_PROBE_AFTER_S = 1.0

# How many workers consume a task group's queue; None when unknown.
ConsumerCount = Callable[[str], int | None]


def poll_waits() -> Iterator[float]:
    """The waits between the polls of a task: FIRST_POLL_S, doubled up to POLL_S."""
    wait = FIRST_POLL_S
    while True:
        yield wait
        wait = min(wait * 2, POLL_S)


class QueueWatch:
    """The workers of ``kind`` consuming their group's task queue, as far as
    RabbitMQ's management API tells; says nothing more than the task states
    without it."""

    def __init__(self, kind: WorkerKind, consumers: ConsumerCount | None = None):
        self._kind, self._consumers = kind, consumers
        self.count: int | None = None
        self._next_probe = time.monotonic() + FIRST_PROBE_AFTER_S
        self._idle_since: float | None = None
        self._warned = False

    async def probe(self) -> int | None:
        """The consumer count, asked again once CONSUMERS_POLL_S have passed."""
        now = time.monotonic()
        if self._consumers is None or now < self._next_probe:
            return self.count
        self._next_probe = now + CONSUMERS_POLL_S
        self.count = await asyncio.to_thread(self._consumers, self._kind.group)
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
        """Warn, once until workers come back, that nothing consumes the queue."""
        await self.probe()
        if self._idle_since is None or self._warned:
            return
        idle_s = time.monotonic() - self._idle_since
        if idle_s >= NO_CONSUMER_WARNING_S:
            err.print(
                f"warning: no worker has consumed the {self._kind.group} task queue"
                f" for {idle_s:.0f} s while {waiting}: {self._start_hint()}",
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
                f"no worker consumes the {self._kind.group} task queue:"
                f" {self._start_hint()}"
            )
        workers = "1 worker is" if self.count == 1 else f"{self.count} workers are"
        return f"{workers} busy with earlier tasks"

    def _start_hint(self) -> str:
        return f"start workers with `ml-worker workers start --kind {self._kind}`"


async def wait_for_task(
    client: TaskClient,
    task_id: str,
    *,
    on_poll: Callable[[Task], None] | None = None,
    watch: QueueWatch | None = None,
) -> Task:
    """The task once it is done, failed or cancelled.

    The one polling loop of the project: the tests and benchmarks wait with it too.
    With a ``watch``, a task that waits long is told about on stderr; without one
    (the tests, the benchmarks), nothing is printed.
    """
    waited_since, hinted, seen = time.monotonic(), False, None
    waits = poll_waits()
    while True:
        task = await client.get_task(task_id)
        if on_poll is not None:
            on_poll(task)
        if task.state in READY_STATES:
            return task
        if watch is None:
            await asyncio.sleep(next(waits))
            continue
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
        await asyncio.sleep(next(waits))


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
    consumers: ConsumerCount | None = None,
) -> Any:
    """Submit a task, wait for it and return its result."""
    task_id = await client.create_task(name, args, group=task_group(name))
    watch = QueueWatch(TASK_KINDS[name], consumers)
    with err.status(shown(f"{name} {task_id}: waiting for a worker…")) as status:
        task = await wait_for_task(
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
    batches: int = 0
    done: int = 0
    cancelled: int = 0
    documents: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # batch task id -> error
    started: float = field(default_factory=time.monotonic)
    docs_done: int = 0  # documents of the finished batches, as submitted
    model: str = ""  # the project's model, and why that one
    model_choice: str = ""

    @property
    def finished(self) -> int:
        return self.done + len(self.failures) + self.cancelled

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def stats(self) -> str:
        left = self.batches - self.finished
        rate = self.docs_done / self.elapsed_s if self.elapsed_s else 0.0
        parts = [
            f"{self.finished}/{self.batches} batches",
            f"{len(self.failures)} failed",
            f"{left} left",
            f"{rate:.1f} docs/s",
        ]
        if self.finished and left:
            parts.append(f"{duration(self.elapsed_s / self.finished * left)} left")
        return " · ".join(parts)


async def follow_vectorization(
    client: TaskClient,
    task_id: str,
    project: str,
    *,
    consumers: ConsumerCount | None = None,
) -> VectorizationRun:
    """Follow a create_vectorization_tasks run and all its batches to their end."""
    run = VectorizationRun(project, task_id)
    watch = QueueWatch(WorkerKind.FANOUT, consumers)
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[stats]}"),
    )
    # Transient: the summary printed afterwards replaces the bar.
    with Progress(*columns, console=err, transient=True) as progress:
        bar = progress.add_task(f"Creating batches of {project}", total=1.0, stats="")
        parent = await wait_for_task(
            client,
            task_id,
            on_poll=lambda t: progress.update(bar, completed=t.progress or 0.0),
            watch=watch,
        )
        await raise_if_failed(client, parent)
        result = await client.get_task_result(task_id, done=True)
        if not isinstance(result, dict):  # a worker of an older version
            raise CLIError(f"task {task_id} did not return a vectorization summary")
        run.model, run.model_choice = result["model"], result["model_choice"]
        if "batches" in result:
            # Temporal's workflow followed its batches itself: its summary.
            run.batches = run.done = result["batches"]
            run.docs_done, run.documents = result["documents"], result["vectorized"]
            return run
        batch_ids = list(result["tasks"])
        run.batches = len(batch_ids)
        progress.update(
            bar,
            description=f"Vectorizing {project}",
            total=run.batches or 1,
            completed=0,
        )
        pending = batch_ids
        watch = QueueWatch(WorkerKind.VECTORIZE, consumers)
        waits = poll_waits()
        while pending:
            window = pending[:POLL_WINDOW]
            batches = await asyncio.gather(*(client.get_task(i) for i in window))
            finished = [b for b in batches if b.state in READY_STATES]
            await asyncio.gather(*(_record(client, run, b) for b in finished))
            finished_ids = {b.id for b in finished}
            pending = [i for i in pending if i not in finished_ids]
            progress.update(bar, completed=run.finished, stats=run.stats())
            if finished:
                watch.saw_progress()
                waits = poll_waits()  # batches end one after another: look again soon
            else:
                left = run.batches - run.finished
                await watch.warn_if_idle(f"{left} batches wait")
                await asyncio.sleep(next(waits))
        progress.update(bar, completed=run.batches or 1, stats=run.stats())
    return run


async def _record(client: TaskClient, run: VectorizationRun, batch: Task) -> None:
    # Await before touching ``run``: `x += await ...` would read x before awaiting,
    # and the batches are recorded concurrently.
    if batch.state is TaskState.DONE:
        written = int(await client.get_task_result(batch.id, done=True) or 0)
        run.done += 1
        run.documents += written
        run.docs_done += len((batch.args or {}).get("docs") or [])
    elif batch.state is TaskState.ERROR:
        error = await last_error(client, batch.id)
        run.failures[batch.id] = describe(error)
    else:
        run.cancelled += 1


def print_vectorization_summary(run: VectorizationRun) -> None:
    if not run.batches:
        out.print(f"Project {run.project} has no documents to vectorize.")
        return
    rate = run.docs_done / run.elapsed_s if run.elapsed_s else 0.0
    out.print(
        shown(
            f"Project {run.project}: {run.docs_done} documents in {run.batches}"
            f" batches, {run.documents} embedded (new or changed),"
            f" {run.docs_done - run.documents} unchanged; {len(run.failures)} batches"
            f" failed, {run.cancelled} cancelled; {duration(run.elapsed_s)},"
            f" {rate:.1f} documents/s; model {run.model} ({run.model_choice})."
        ),
        soft_wrap=True,
    )
    for batch_id, error in run.failures.items():
        out.print(shown(f"  failed batch {batch_id}: {error}"))
    if run.failures or run.cancelled:
        raise CLIError(
            f"{len(run.failures) + run.cancelled} of {run.batches} batches of"
            f" {run.project} did not complete"
        )


async def search_project(
    client: TaskClient,
    project: str,
    queries: list[str],
    *,
    consumers: ConsumerCount | None = None,
    **options: Any,
) -> list[list[dict]]:
    """find_most_similar's ranked documents for each query; unset options left out."""
    args = {"project": project, "queries": list(queries), **_given(options)}
    return await run_task(client, FIND_MOST_SIMILAR, args, consumers=consumers)
