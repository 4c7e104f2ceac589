"""The processes a local stack starts: each in its own session, its output in a
log, waited for until it answers, and stopped with its children on the way out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from ml_worker.exceptions import Unavailable

# This environment's console scripts: icij-worker's task service, ml-worker's CLI,
# and dbmate for the task storage's migrations.
SCRIPTS = Path(sys.executable).parent


READY_TIMEOUT_S = 120.0


class ServiceUnreachable(Unavailable):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def environment(**values: str | None):
    """Sets the variables whose value is not None, for the block only."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def console_script(name: str) -> str:
    """A console script of this environment, whatever the caller's PATH."""
    return str(SCRIPTS / name)


@contextmanager
def started(cmd: list[str], log_path: Path, env: dict | None = None):
    env = {**os.environ, "PATH": _env_path(), **(env or {})}
    with log_path.open("ab") as log:
        # Its own session, so stopping it stops the processes it spawned too.
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        _stop(process)


def _env_path() -> str:
    return os.pathsep.join([str(SCRIPTS), os.environ.get("PATH", "")])


def _stop(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def wait_until(ready, process: subprocess.Popen, *, what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready():
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ServiceUnreachable(f"{what} exited at start-up:\n{tail}")
        if time.monotonic() > deadline:
            raise ServiceUnreachable(f"{what} not ready after {READY_TIMEOUT_S}s")
        time.sleep(0.5)
