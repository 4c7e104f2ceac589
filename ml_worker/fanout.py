"""A project's vectorization fanned out in batches: the one loop every engine runs.

The fan-out reads the project's document ids a page at a time, cuts them into
batches of ``batch_size`` ids and keeps at most ``window`` batches running at once.
Each batch is a ``vectorize_docs`` run by the engine's own means (a child task on
icij-worker, an activity on Temporal): the engine hands in a ``BatchRunner`` and
the loop neither knows nor cares which.

A bounded window rather than every batch queued at once: the batches of a project
that starts later queue beside this one's few instead of behind all of them, so a
small project is not held back hours by a large one; and the run's memory is a
page of ids and the window, whatever the project's size.

The loop is written for Temporal's workflow sandbox as well: nothing here touches
the clock, threads or I/O, and batches finish through an ``asyncio.Event``, which
replays deterministically.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# A failed batch's error is kept in the summary, up to this many: the first tell
# what went wrong, a thousand would only make the result heavy.
KEPT_FAILURES = 20


@dataclass
class BatchCounts:
    """What one ``vectorize_docs`` batch did with its documents."""

    documents: int = 0  # ids in the batch
    new: int = 0  # embedded for the first time
    changed: int = 0  # embedded again: their text changed since
    unchanged: int = 0  # skipped: the table holds their current text
    missing: int = 0  # no longer in the index when the batch ran

    @classmethod
    def of(cls, result: Any) -> BatchCounts:
        """A batch's result as a task API returns it (a JSON object)."""
        if not isinstance(result, dict):
            raise BatchFailed(f"unexpected batch result {result!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: int(v) for k, v in result.items() if k in names})


@dataclass
class VectorizationSummary:
    """The result of ``create_vectorization_tasks``, the same on every engine.

    ``documents`` = ``new`` + ``changed`` + ``unchanged`` + ``missing`` +
    ``failed``: every id read from the index lands in one of them. ``removed``
    counts the table's documents no longer in the index, deleted before the
    batches ran.
    """

    project: str
    model: str  # the project's model: an alias where it has one
    model_choice: str  # why that model (model_choice.choose_model)
    batches: int = 0
    documents: int = 0  # ids read from the index
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    missing: int = 0
    removed: int = 0
    failed: int = 0  # documents of batches that failed
    failures: list[str] = field(default_factory=list)  # the first failed batches'

    def add(self, counts: BatchCounts) -> None:
        self.new += counts.new
        self.changed += counts.changed
        self.unchanged += counts.unchanged
        self.missing += counts.missing

    def fail(self, documents: int, error: str) -> None:
        self.failed += documents
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append(error)

    def as_result(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FanOutState:
    """Where a vectorization stands: all an engine must keep to resume it (Temporal
    hands it from one run of its workflow to the next)."""

    project: str
    total: int  # documents in the index when counted
    batch_size: int  # ids per batch
    page_size: int  # ids read from the index at a time
    window: int  # batches running at once
    summary: VectorizationSummary
    after: str | None = None  # the last id of the last page whose batches ran
    done: int = 0  # documents of the batches that ended, failed ones included


class BatchFailed(Exception):
    """A batch ended without doing its work (failed after its retries, or was
    cancelled): its documents count as failed, and the run goes on."""


class BatchRunner(Protocol):
    """What an engine provides the fan-out with."""

    async def id_page(self, after: str | None, size: int) -> list[str]:
        """The ``size`` document ids following ``after``, in id order."""
        ...

    async def run_batch(self, docs: list[str]) -> BatchCounts:
        """Vectorize these documents; BatchFailed if the batch did not."""
        ...

    async def progress(self, done: int, total: int) -> None:
        """``done`` documents of ``total`` have been through their batch."""
        ...


def whole_batches(page_size: int, batch_size: int) -> int:
    """``page_size`` rounded down to whole batches, so that no batch is cut short
    at the end of a page. A batch larger than a page (whose size Elasticsearch's
    result window bounds) is cut to the page."""
    if page_size < batch_size:
        return page_size
    return page_size // batch_size * batch_size


def batched(ids: list[str], size: int) -> Iterator[list[str]]:
    """``ids`` cut into lists of ``size`` (the last one shorter)."""
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


async def run_fan_out(
    state: FanOutState, runner: BatchRunner, *, max_pages: int | None = None
) -> bool:
    """Run the project's batches from ``state.after`` on, ``state.window`` at once.

    Returns True once every id has been through its batch, or False after
    ``max_pages`` pages, every batch of them ended: ``state`` then says where to go
    on from (what Temporal's continue-as-new needs). Cancelled, it cancels the
    batches still running.
    """
    window = _Window(state, runner)
    try:
        pages = 0
        while True:
            page = await runner.id_page(state.after, state.page_size)
            for batch in batched(page, state.batch_size):
                await window.wait_for_room()
                window.start(batch)
            if len(page) < state.page_size:
                await window.drain()
                return True
            state.after = page[-1]
            pages += 1
            if max_pages is not None and pages >= max_pages:
                await window.drain()
                return False
    finally:
        window.cancel()


class _Window:
    """The batches running at once, and the bookkeeping of those that end."""

    def __init__(self, state: FanOutState, runner: BatchRunner):
        self._state, self._runner = state, runner
        self._running: list[asyncio.Task[None]] = []
        self._ended = asyncio.Event()

    def start(self, docs: list[str]) -> None:
        self._state.summary.batches += 1
        self._state.summary.documents += len(docs)
        self._running.append(asyncio.create_task(self._run(docs)))

    async def wait_for_room(self) -> None:
        while len(self._running) >= self._state.window:
            await self._one_ends()

    async def drain(self) -> None:
        while self._running:
            await self._one_ends()

    def cancel(self) -> None:
        for task in self._running:
            task.cancel()

    async def _one_ends(self) -> None:
        await self._ended.wait()
        self._ended.clear()
        ended = [t for t in self._running if t.done()]
        self._running = [t for t in self._running if not t.done()]
        for task in ended:
            task.result()  # an error other than a failed batch ends the run

    async def _run(self, docs: list[str]) -> None:
        summary = self._state.summary
        try:
            try:
                counts = await self._runner.run_batch(docs)
            except BatchFailed as e:
                summary.fail(len(docs), str(e))
            else:
                summary.add(counts)
            self._state.done += len(docs)
            # Counted at the start: documents indexed since may outnumber it.
            await self._runner.progress(
                self._state.done, max(self._state.total, self._state.done)
            )
        finally:
            self._ended.set()
