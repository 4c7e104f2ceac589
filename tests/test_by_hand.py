"""`./ml-worker stack` and `load`: a user's own folder of documents, vectorized and
searched with the CLI and the settings the stack wrote, as docs/by-hand.md says."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.test_cli import _CLEAN_ENV, ROOT

STACK_READY_S = 300


def _settings(env_file: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines the stack wrote."""
    pattern = re.compile(r"^export (\w+)=(.*)$")
    settings = {}
    for line in env_file.read_text().splitlines():
        found = pattern.match(line)
        assert found, f"not an export line: {line!r}"
        settings[found[1]] = found[2]
    return settings


def _run(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**_CLEAN_ENV, "COLUMNS": "200", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.e2e
def test_a_folder_loaded_into_the_stack_is_vectorized_and_searched(
    tmp_path, es_url, rabbitmq, postgres
):
    folder = tmp_path / "my-documents"
    (folder / "letters").mkdir(parents=True)
    (folder / "letters" / "lighthouse.txt").write_text(
        "The keeper of the lighthouse wrote about the storm that sank the ferry."
    )
    (folder / "invoice.md").write_text("Invoice for twelve tons of cement, unpaid.")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff\x00\x10JFIF\x00binary")
    project = f"mine-{uuid.uuid4().hex[:6]}"
    workdir = tmp_path / "stack"
    log = tmp_path / "stack.log"
    with log.open("wb") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "ml_worker_dev", "stack", "--workdir", str(workdir)],
            env={**_CLEAN_ENV, "ML_WORKER_ES_ADDRESS": es_url},
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STACK_READY_S
        while not (workdir / "env").exists():
            assert stack.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        settings = _settings(workdir / "env")

        loaded = _run(
            "ml_worker_dev", "load", str(folder), "--project", project, env=settings
        )
        vectorized = _run("ml_worker.cli", "vectorize", project, env=settings)
        found = _run(
            "ml_worker.cli", "search", project, "storm at sea", "--json", env=settings
        )
    finally:
        stack.send_signal(signal.SIGINT)
        stopped = stack.wait(60)

    assert loaded.returncode == 0, loaded.stderr
    assert f"Indexed 2 files of {folder} into project {project}; skipped 1" in (
        loaded.stdout
    )
    assert vectorized.returncode == 0, vectorized.stderr
    assert f"Project {project}: 2 documents" in vectorized.stdout
    assert found.returncode == 0, found.stderr
    [hits] = json.loads(found.stdout)
    assert hits[0]["path"] == str((folder / "letters" / "lighthouse.txt").resolve())
    assert stopped == 0, log.read_text()
    vhost = settings["ICIJ_WORKER_RABBITMQ_VHOST"]
    assert rabbitmq.task_queue_consumers(vhost, "PYTHON") == 0  # gone with the stack
