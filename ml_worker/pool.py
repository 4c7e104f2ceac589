"""``ml-worker workers start``: a pool of worker processes that heals itself.

Each worker is a process of its own, started by the configured engine's command
(``TaskEngine.worker_command``), and a worker that exits while the pool is not
stopping is started again, after a backoff. icij-worker 0.19.5's own pool runs N
workers in one ProcessPoolExecutor: one worker killed (SIGKILL, out of memory)
broke it (``BrokenProcessPool``), and every other worker and the parent exited with
it; its workers also exit when they lose RabbitMQ. What a dead worker had not
acknowledged, the engine hands to another (RabbitMQ redelivers it, Temporal retries
it once its heartbeats stop): the pool keeps no account of tasks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from icij_common.logging_utils import setup_loggers

from ml_worker.constants import WorkerKind

logger = logging.getLogger(__name__)

# SIGTERM, then SIGKILL for workers still alive this long after: the pool is gone
# within 10 s of being asked to stop.
STOP_GRACE_S = 8.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Vectorizing workers yield the CPU to the search and fan-out workers and to the
# task service beside them: two vectorizing workers draining a backlog on 2 cores
# made searches wait for CPU at every step (bench.search_e2e, docs/performance.md).
VECTORIZE_NICENESS = 10
# Fan-out workers of a pool: on icij-worker a vectorization holds one for its whole
# run (it follows its batches), so this many projects vectorize at once; a Temporal
# fan-out worker runs several.
FANOUT_WORKERS = 2


@dataclass(frozen=True)
class Backoff:
    """Waits before restarting a worker: ``first_s``, doubled at each exit in a row
    up to ``max_s``; back to ``first_s`` once a worker ran ``reset_after_s``."""

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def next_wait(self, previous_s: float | None, uptime_s: float) -> float:
        if previous_s is None or uptime_s >= self.reset_after_s:
            return self.first_s
        return min(previous_s * 2, self.max_s)


def pool_kinds(n_workers: int, kind: WorkerKind | None) -> list[WorkerKind]:
    """The kind of each worker of a pool: ``n_workers`` of ``kind``; without a kind,
    ``n_workers`` vectorizing workers, one search worker and ``FANOUT_WORKERS``
    fan-out workers, so that one pool serves every task and searches never queue
    behind batches."""
    if kind is not None:
        return [kind] * n_workers
    return (
        [WorkerKind.VECTORIZE] * n_workers
        + [WorkerKind.SEARCH]
        + [WorkerKind.FANOUT] * FANOUT_WORKERS
    )


def niced(kind: WorkerKind, command: list[str]) -> list[str]:
    """``command``, at a lower CPU priority for a vectorizing worker: batches can
    wait, searches should not."""
    if kind is WorkerKind.VECTORIZE:
        return ["nice", "-n", str(VECTORIZE_NICENESS), *command]
    return command


def run_pool(
    n_workers: int,
    *,
    kind: WorkerKind | None = None,
    config: Path | None = None,
    backoff: Backoff = Backoff(),
) -> None:
    """Run the workers ``pool_kinds`` lists until SIGINT or SIGTERM, restarting
    those that exit; ``config``: the engine's settings file for the workers."""
    setup_loggers([__name__])
    from ml_worker.config import MLWorkerConfig
    from ml_worker.engines import engine_for

    engine = engine_for(MLWorkerConfig())
    engine.check_worker_settings(config)
    commands = [
        niced(k, engine.worker_command(k, config)) for k in pool_kinds(n_workers, kind)
    ]
    logger.info("%s workers", engine.config.engine.value)
    supervise(commands, backoff, env=engine.worker_environment())


def supervise(
    commands: list[list[str]],
    backoff: Backoff = Backoff(),
    *,
    env: dict[str, str] | None = None,
) -> None:
    """Keep a process of each of ``commands`` running until SIGINT or SIGTERM;
    ``env``: variables they get beside the pool's own."""
    asyncio.run(_Pool(commands, backoff, {**os.environ, **(env or {})}).run())


class _Pool:
    def __init__(
        self, commands: list[list[str]], backoff: Backoff, env: dict[str, str]
    ):
        self._commands, self._backoff, self._env = commands, backoff, env
        self._stopping = asyncio.Event()
        self._workers: dict[int, asyncio.subprocess.Process] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in _STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        slots = [
            asyncio.create_task(self._keep_running(i))
            for i in range(len(self._commands))
        ]
        for i, cmd in enumerate(self._commands):
            logger.info("worker %d: %s", i, " ".join(cmd))
        await self._stopping.wait()
        started = loop.time()
        self._signal_workers(signal.SIGTERM)
        _, alive = await asyncio.wait(slots, timeout=STOP_GRACE_S)
        if alive:
            logger.warning("%d workers still running: killing them", len(alive))
            self._signal_workers(signal.SIGKILL)
            await asyncio.wait(alive)
        logger.info("pool stopped in %.1f s", loop.time() - started)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            # Asked twice: no more grace.
            logger.warning("%s again: killing the workers", sig.name)
            self._signal_workers(signal.SIGKILL)
            return
        logger.info("%s: stopping the workers", sig.name)
        self._stopping.set()

    def _signal_workers(self, sig: signal.Signals) -> None:
        for process in self._workers.values():
            if process.returncode is None:
                with suppress(ProcessLookupError):
                    process.send_signal(sig)

    async def _keep_running(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        wait_s: float | None = None
        while not self._stopping.is_set():
            try:
                process = await asyncio.create_subprocess_exec(
                    *self._commands[slot], env=self._env
                )
            except OSError as e:  # out of memory or processes: try again later
                wait_s = self._backoff.next_wait(wait_s, 0.0)
                logger.error(
                    "worker %d could not start (%s): trying again in %g s",
                    slot,
                    e,
                    wait_s,
                )
                await self._pause(wait_s)
                continue
            self._workers[slot] = process
            started = loop.time()
            logger.info("worker %d started (pid %d)", slot, process.pid)
            if self._stopping.is_set():  # asked to stop while it was starting
                process.send_signal(signal.SIGTERM)
            code = await process.wait()
            uptime_s = loop.time() - started
            cause = exit_cause(code)
            if self._stopping.is_set():
                logger.info("worker %d (pid %d) stopped: %s", slot, process.pid, cause)
                return
            wait_s = self._backoff.next_wait(wait_s, uptime_s)
            logger.warning(
                "worker %d (pid %d) %s after %.1f s: restarting it in %g s",
                slot,
                process.pid,
                cause,
                uptime_s,
                wait_s,
            )
            await self._pause(wait_s)

    async def _pause(self, seconds: float) -> None:
        """Wait, unless the pool is stopped meanwhile."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


def exit_cause(returncode: int) -> str:
    """How a process ended, from its return code (negative: killed by a signal)."""
    if returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"
