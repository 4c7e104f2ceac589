"""The documentation builds, and covers every task and every setting."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest

from ml_worker import tasks
from ml_worker.arguments import INJECTED
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import CREATE_VECTORIZATION_TASKS

# Each task's function, whose signature declares its arguments: the
# vectorization's is its first step's.
DECLARED = {**tasks.TASKS, CREATE_VECTORIZATION_TASKS: tasks.prepare_vectorization}

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


def test_mkdocs_build_strict_passes(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_every_task_has_its_page(name):
    page = DOCS / "tasks" / f"{name}.md"
    assert page.exists(), f"docs/tasks/{name}.md is missing"
    assert f"tasks/{name}.md" in (ROOT / "mkdocs.yml").read_text()
    text = page.read_text()
    parameters = inspect.signature(DECLARED[name]).parameters
    for parameter in parameters:
        if parameter not in INJECTED:
            assert f"| `{parameter}` |" in text, f"{name}: argument {parameter}"


def _default(field) -> str:
    default = field.default
    if default is None:
        return "unset"
    if isinstance(default, Enum):
        default = default.value
    return f"`{default}`"


@pytest.mark.parametrize("name", sorted(MLWorkerConfig.model_fields))
def test_every_setting_is_documented(name):
    field = MLWorkerConfig.model_fields[name]
    rows = (DOCS / "configuration.md").read_text().splitlines()
    row_start = f"| `ML_WORKER_{name.upper()}` | `{name}` | "
    matching = [r for r in rows if r.startswith(row_start)]

    assert len(matching) == 1, f"configuration.md: {len(matching)} rows for {name}"
    assert matching[0].removeprefix(row_start).startswith(_default(field) + " |")
