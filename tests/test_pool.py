"""The supervised worker pool (``ml-worker workers start``) on real services.

Workers killed or cut off from RabbitMQ mid-run come back by themselves and the run
completes with an exact table; SIGINT and SIGTERM stop the pool within 10 s, even
mid-batch; ``vectorize`` says when nothing consumes the task queue. The pools, the
task service and ``vectorize`` are real processes; RabbitMQ and PostgreSQL are the
machine's, in a virtual host of this module's own.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from icij_worker import TaskState

from ml_worker import store
from ml_worker.config import EngineName, MLWorkerConfig
from ml_worker.constants import WorkerKind
from ml_worker.engines import engine_for
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker.pool import Backoff, niced, pool_kinds
from ml_worker_dev.local_stack import (
    free_port,
    task_stack,
    wait_for_workers,
    worker_pool,
)
from tests.corpus import filler
from tests.stack import (
    batch_tasks,
    create_table,
    submit_batches,
    wait_ended,
    wait_state,
)
from tests.tables import assert_table_exact, indexed_contents, seed

TEST_TIMEOUT_S = 420
STOP_WITHIN_S = 10.0
ROOT = Path(__file__).parent.parent
# The test environment's settings must not reach the CLI processes.
_CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("ML_WORKER_", "ICIJ_WORKER_"))
}


def test_backoff_doubles_up_to_its_ceiling_and_resets_after_a_minute_up():
    backoff, waits, wait = Backoff(), [], None
    for _ in range(7):
        wait = backoff.next_wait(wait, uptime_s=5.0)
        waits.append(wait)

    assert waits == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_wait(30, uptime_s=60.0) == 1


@pytest.mark.parametrize("engine", list(EngineName))
def test_vectorizing_workers_run_at_a_lower_cpu_priority_than_searches(engine):
    workers = engine_for(MLWorkerConfig(engine=engine))

    def niceness(kind: WorkerKind) -> int:
        cmd = niced(kind, workers.worker_command(kind, None))
        # What the command runs the worker with, running a probe instead.
        launcher = cmd[: cmd.index(sys.executable)]
        probe = [sys.executable, "-c", "import os; print(os.nice(0))"]
        return int(subprocess.check_output(launcher + probe))

    assert niceness(WorkerKind.VECTORIZE) > niceness(WorkerKind.SEARCH)
    assert niceness(WorkerKind.FANOUT) == niceness(WorkerKind.SEARCH)


# A supervisor of stand-in workers, started as the pool is: in its own session.
_SUPERVISOR = """
import sys
from ml_worker.pool import Backoff, setup_loggers, supervise
setup_loggers(["ml_worker.pool"])
supervise([[sys.executable, "-c", sys.argv[1]]] * 2, Backoff(first_s=0.2))
"""


def start_supervisor(worker_code: str, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _SUPERVISOR, worker_code],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def test_workers_that_exit_are_restarted_with_backoff(tmp_path):
    log = tmp_path / "pool.log"
    pool = start_supervisor("import sys, time; time.sleep(0.3); sys.exit(3)", log)
    try:
        deadline = time.monotonic() + 60
        while log.read_text().count("exited with code 3") < 6:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        pool.send_signal(signal.SIGTERM)
        pool.wait(30)
    waits = re.findall(
        r"worker 0 \(pid \d+\) exited with code 3 after \S+ s: restarting it in (\S+) s",
        log.read_text(),
    )
    assert waits[:3] == ["0.2", "0.4", "0.8"]
    assert pool.returncode == 0 and not group_alive(pool.pid)


def test_workers_deaf_to_sigterm_are_killed_within_the_deadline(tmp_path):
    log = tmp_path / "pool.log"
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    pool = start_supervisor(deaf, log)
    try:
        while log.read_text().count("started (pid") < 2:
            time.sleep(0.1)
        time.sleep(1)  # the stand-ins ignore SIGTERM by now
        started = time.monotonic()
        pool.send_signal(signal.SIGTERM)
        pool.wait(STOP_WITHIN_S)
        while group_alive(pool.pid):  # the supervisor is reaped: its workers
            assert time.monotonic() - started < STOP_WITHIN_S, "workers left"
            time.sleep(0.05)
    finally:
        if group_alive(pool.pid):
            os.killpg(pool.pid, signal.SIGKILL)
    assert "2 workers still running: killing them" in log.read_text()
    assert "stopped: killed by SIGKILL" in log.read_text()


def test_bad_settings_fail_before_any_worker_starts(tmp_path):
    app_config = tmp_path / "ml-worker.json"
    app_config.write_text('{"vectorize_batch_size": 0}')
    config = tmp_path / "workers.json"
    config.write_text(
        f'{{"type": "amqp", "app_bootstrap_config_path": "{app_config}"}}'
    )
    started = subprocess.run(
        [sys.executable, "-m", "ml_worker.cli", "workers", "start", "-c", str(config)],
        env=_CLEAN_ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert started.returncode == 2
    assert "invalid MLWorkerConfig settings: vectorize_batch_size" in started.stderr
    assert "started (pid" not in started.stderr


class Service:
    def __init__(self, workdir: Path, url: str, vhost: str, rabbitmq, settings: dict):
        self.workdir, self.url, self.vhost = workdir, url, vhost
        self.rabbitmq = rabbitmq
        self.config = {**settings, "es_retry_s": 60.0}

    def pool(self, name: str, n_workers: int = 2):
        workdir = self.workdir / name
        workdir.mkdir()
        return worker_pool(
            workdir,
            n_workers=n_workers,
            rabbitmq=self.rabbitmq,
            vhost=self.vhost,
            ml_worker_config=self.config,
        )

    async def ready(self, pool, name: str, n_workers: int = 2) -> None:
        await asyncio.to_thread(
            wait_for_workers,
            self.rabbitmq,
            self.vhost,
            n_workers,
            pool,
            log=self.workdir / name / "workers.log",
        )

    def log(self, name: str) -> str:
        return (self.workdir / name / "workers.log").read_text(errors="replace")

    def db(self):
        return store.connect(self.config["vector_db_uri"])

    def table(self, project: str):
        return store.open_table(self.db(), project)


@pytest.fixture(scope="module")
def service(tmp_path_factory, es_url, rabbitmq, postgres):
    """The task service in the module's vhost; no worker."""
    workdir = tmp_path_factory.mktemp("pool")
    with task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url) as (
        vhost,
        url,
        settings,
    ):
        yield Service(workdir, url, vhost, rabbitmq, settings)


@pytest.fixture
async def client(service):
    async with ICIJTaskClient(service.url) as client:
        yield client


def worker_pids(pool: subprocess.Popen) -> set[int]:
    """The pool's worker processes: the supervisor's children."""
    pids: set[int] = set()
    for task in Path(f"/proc/{pool.pid}/task").iterdir():
        pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def vectorizing_pids(pids: set[int]) -> set[int]:
    """Those of ``pids`` that consume the batches' group."""
    group = WorkerKind.VECTORIZE.group
    return {
        pid
        for pid in pids
        if f"\0-g\0{group}\0" in Path(f"/proc/{pid}/cmdline").read_text()
    }


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


async def _seed_slow_batches(es, project: str) -> None:
    """Long documents, so that batches of two keep a worker busy a while."""
    rng = random.Random(3)
    long_docs = {f"doc-{i:04d}": filler(rng, 300) for i in range(0, 40, 2)}
    await seed(es, project, 48, special=long_docs)


async def _start_run(service, es, client, project: str) -> list[str]:
    """A run's batches, all submitted at once: the workers are hurt while every
    one of them is busy, where a fan-out keeps only a few batches in flight."""
    await _seed_slow_batches(es, project)
    create_table(service.db(), project)
    return await submit_batches(client, es, project, batch_size=2)


async def _assert_run_exact(service, es, client, project, children) -> None:
    states = await wait_ended(client, children)
    assert set(states.values()) == {TaskState.DONE}
    # Each batch accounts for each of its documents once, redelivered or not.
    counts = [await client.get_task_result(c) for c in children]
    assert sum(c["documents"] for c in counts) == len(
        await indexed_contents(es, project)
    )
    for c in counts:
        assert c["new"] + c["changed"] + c["unchanged"] == c["documents"], c
    await assert_table_exact(service.table(project), es, project)


@pytest.fixture(scope="class")
async def pool(service):
    """Two workers for a class of tests, stopped after its last test."""
    with service.pool("healing") as pool:
        await service.ready(pool, "healing")
        yield pool


@pytest.mark.scale
class TestHealing:
    """Workers hurt by each test in turn: the pool heals every time."""

    async def test_a_killed_worker_is_replaced_and_the_run_completes(
        self, service, pool, es, client, project
    ):
        async with asyncio.timeout(TEST_TIMEOUT_S):
            before = worker_pids(pool)
            children = await _start_run(service, es, client, project)
            await wait_state(client, children, TaskState.RUNNING, at_least=2)
            victim = min(vectorizing_pids(before))
            os.kill(victim, signal.SIGKILL)

            await _assert_run_exact(service, es, client, project, children)
            await service.ready(pool, "healing")
            after = worker_pids(pool)
            # 2 vectorizing, a search and the fan-out workers.
            assert len(after) == len(before) == len(pool_kinds(2, None))
            assert victim not in after and after & before
            assert f"(pid {victim}) killed by SIGKILL" in service.log("healing")

    async def test_workers_cut_off_from_rabbitmq_come_back(
        self, service, pool, es, client, project
    ):
        async with asyncio.timeout(TEST_TIMEOUT_S):
            # The vectorizing workers, busy with the run's batches. Idle workers
            # cut off the same way did not consume again (icij-worker 0.19.5):
            # not covered here yet.
            before = vectorizing_pids(worker_pids(pool))
            children = await _start_run(service, es, client, project)
            await wait_state(client, children, TaskState.DONE, at_least=1)
            await asyncio.to_thread(_rabbitmq_away, service, before, seconds=15)

            await _assert_run_exact(service, es, client, project, children)
            await service.ready(pool, "healing")
            assert worker_pids(pool).isdisjoint(before)


def _rabbitmq_away(service, pids: set[int], *, seconds: float) -> None:
    """RabbitMQ gone for the workers a while, as in a broker restart: their
    connections closed, and new ones refused (the user's permissions on the
    module's vhost revoked) until it is back. The machine's other connections, and
    the task service's, are left alone.

    Refused, not only closed: a worker whose connection comes back at once
    publishes its batch's result, fails to acknowledge the batch and exits; the
    batch runs again elsewhere and its result comes twice. icij-worker 0.19.5's
    task service then stops recording states (its PostgreSQL storage refuses the
    second result, which ends its event consumer), and its own connection, once
    closed, is not consumed again either.
    """
    rabbitmq = service.rabbitmq
    ports = _tcp_ports(pids, to_port=rabbitmq.port)
    vhost, user = quote(service.vhost, safe=""), quote(rabbitmq.user, safe="")
    with httpx.Client(
        base_url=rabbitmq.management_url, auth=(rabbitmq.user, rabbitmq.password)
    ) as api:
        res = api.get(f"/api/vhosts/{vhost}/connections")
        res.raise_for_status()
        names = [c["name"] for c in res.json() if c["peer_port"] in ports]
        assert names, "the workers' connections not found"
        api.delete(f"/api/permissions/{vhost}/{user}").raise_for_status()
        try:
            for name in names:
                api.delete(
                    f"/api/connections/{quote(name, safe='')}"
                ).raise_for_status()
            time.sleep(seconds)
        finally:
            api.put(
                f"/api/permissions/{vhost}/{user}",
                json={"configure": ".*", "write": ".*", "read": ".*"},
            ).raise_for_status()


def _tcp_ports(pids: set[int], *, to_port: int) -> set[int]:
    """The local ports of these processes' TCP connections to ``to_port``, from
    /proc (the management API names a connection by its client's port)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == to_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


# The CLI, with its waits shortened; otherwise run as users run it. Its queued hint
# still waits longer than the 2.75 s a new queue has no statistics (a hint after
# 1 s, given once, said "is a fanout worker running?" where the management API was
# about to count no consumer), and the no-consumer warning later still.
_CLI = """
import sys
from ml_worker.cli import follow, main
follow.QUEUED_HINT_AFTER_S = 6.0
follow.CONSUMERS_POLL_S = 0.2
follow.NO_CONSUMER_WARNING_S = 12.0
main(sys.argv[1:])
"""


def start_cli(service, log: Path, *args: str, env: dict | None = None):
    env = {
        **_CLEAN_ENV,
        "ML_WORKER_TASK_SERVICE_URL": service.url,
        "ICIJ_WORKER_RABBITMQ_VHOST": service.vhost,
        **(env or {}),
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _CLI, *args],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_for_text(log: Path, text: str, process, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"never printed {text!r}"
        await asyncio.sleep(0.2)


def _interrupt(process) -> None:
    process.send_signal(signal.SIGINT)
    process.wait(30)


@pytest.mark.scale
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
async def test_a_signal_stops_the_pool_mid_batch(service, es, client, project, sig):
    """The pool is gone within 10 s, and ``vectorize``, following the run, says
    that no worker takes it any more."""
    name = f"stopped-{sig.name}"
    log = service.workdir / f"vectorize-{sig.name}.log"
    async with asyncio.timeout(TEST_TIMEOUT_S):
        with service.pool(name) as pool:
            await service.ready(pool, name)
            await _seed_slow_batches(es, project)
            cli = start_cli(service, log, "vectorize", project, "--batch-size", "2")
            try:
                parent = await _submitted_task(log, cli)
                await _wait_for_a_running_batch(client, project)

                started = time.monotonic()
                os.kill(pool.pid, sig)
                # Polled first, so that the supervisor does not linger as a zombie.
                while pool.poll() is None or group_alive(pool.pid):
                    assert time.monotonic() - started < STOP_WITHIN_S, "pool still up"
                    await asyncio.sleep(0.05)
                stopped_in = time.monotonic() - started

                await _wait_for_text(log, _NO_FANOUT_WORKER, cli)
            finally:
                await asyncio.to_thread(_interrupt, cli)
                await asyncio.to_thread(_purge_task_queue, service)
    warning = (
        rf"{_NO_FANOUT_WORKER} \d+ s while task {re.escape(parent)} waits: start"
        r" workers with `ml-worker workers start --kind fanout`"
    )
    assert re.search(warning, log.read_text()), log.read_text()
    assert pool.returncode == 0
    assert f"{sig.name}: stopping the workers" in service.log(name)
    print(f"pool stopped by {sig.name} in {stopped_in:.2f} s")


# What `vectorize` says once the run's fan-out worker is gone: its task, running
# when the pool stopped, is no longer moved on by any worker.
_NO_FANOUT_WORKER = "warning: no fanout worker has taken a task for"


async def _wait_for_a_running_batch(client, project: str) -> None:
    """Until one of the batches the run's fan-out created runs."""
    while True:
        for batch in await batch_tasks(client, project):
            if (await client.get_task(batch)).state is TaskState.RUNNING:
                return
        await asyncio.sleep(0.1)


async def _submitted_task(log: Path, cli) -> str:
    await _wait_for_text(log, " submitted.", cli)
    submitted = re.search(r"Task (\S+) submitted\.", log.read_text())
    assert submitted is not None
    return submitted.group(1)


async def _wait_for_no_fanout_consumer(service) -> None:
    """Until the management API counts no consumer of the fan-out queue: earlier
    tests' pools ran in this vhost, and its statistics lag their exit (35 s
    measured after a pool was replaced)."""
    group = WorkerKind.FANOUT.group
    while await asyncio.to_thread(
        service.rabbitmq.task_queue_consumers, service.vhost, group
    ):
        await asyncio.sleep(0.5)


def _purge_task_queue(service) -> None:
    """Drop the tasks a test left queued, which no later test should run."""
    for kind in (WorkerKind.FANOUT, WorkerKind.VECTORIZE):
        service.rabbitmq.purge_task_queue(service.vhost, kind.group)


@pytest.mark.scale
@pytest.mark.parametrize(
    ("management_port", "hint"),
    [
        # `vectorize` waits for its fan-out first.
        (
            None,
            "no worker takes the PYTHON_FANOUT group's tasks: start workers with"
            " `ml-worker workers start --kind fanout`",
        ),
        (free_port(), "is a fanout worker running? (start workers with"),
    ],
    ids=["management-api", "no-management-api"],
)
async def test_vectorize_says_why_its_task_waits(
    service, tmp_path, management_port, hint
):
    env = {}
    if management_port is not None:
        env["ICIJ_WORKER_RABBITMQ_MANAGEMENT_PORT"] = str(management_port)
    log = tmp_path / "vectorize.log"
    async with asyncio.timeout(TEST_TIMEOUT_S):
        await _wait_for_no_fanout_consumer(service)
        cli = start_cli(service, log, "vectorize", "nobody-consumes-this", env=env)
        try:
            await _wait_for_text(log, "is still queued after", cli)
            await asyncio.sleep(13)  # longer than NO_CONSUMER_WARNING_S
        finally:
            await asyncio.to_thread(_interrupt, cli)
            await asyncio.to_thread(_purge_task_queue, service)
    output = log.read_text()
    assert hint in output, output
    # The hint said it: no warning besides.
    assert "warning:" not in output
    assert cli.returncode == 130
