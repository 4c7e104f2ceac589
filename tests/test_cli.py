"""The ``ml-worker`` command line, run as users run it: one process per command.

The e2e tests run on the session's stack (the task service, and workers started by
``ml-worker workers start``: ``session_workers``), over the bundled sample corpus.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ml_worker.cli.docs import command_paths, normalize
from ml_worker.cli.errors import next_step, remote_error_code
from ml_worker.cli.main import app
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import WorkerKind, task_group
from ml_worker.pool import FANOUT_WORKERS
from ml_worker_dev.demo import load_corpus, load_sample_corpus
from ml_worker_dev.local_stack import free_port
from tests.stack import wait_ended

ROOT = Path(__file__).parent.parent
CLI_DOCS = ROOT / "docs" / "cli.md"
TIMEOUT_S = 300
# Settings of the environment running the tests must not leak into the commands.
_CLEAN_ENV = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("ML_WORKER_", "ICIJ_WORKER_", "COLUMNS"))
}


def cli(
    *args: str, env: dict[str, str] | None = None, module: str = "ml_worker.cli"
) -> subprocess.CompletedProcess:
    """``module``'s command line: the CLI, or the checkout's (``ml_worker_dev``)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env={**_CLEAN_ENV, "COLUMNS": "120", **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one line the CLI writes on stderr when it fails."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, f"nothing on stderr; stdout: {result.stdout}"
    assert lines[-1].startswith("ml-worker: error: "), result.stderr
    return lines[-1]


# The reference page and --help


def test_docs_page_is_generated_from_the_help():
    page = subprocess.run(
        [sys.executable, "-m", "ml_worker_dev", "docs"],
        capture_output=True,
        text=True,
        check=True,
        env=_CLEAN_ENV,
    ).stdout
    assert CLI_DOCS.read_text() == page, (
        "docs/cli.md is out of date: python -m ml_worker_dev docs > docs/cli.md"
    )


@pytest.mark.parametrize(
    "path", command_paths(app), ids=lambda path: " ".join(["ml-worker", *path])
)
def test_help_of_every_command_is_in_the_docs(path):
    result = cli(*path, "--help", env={"COLUMNS": "80"})

    assert result.returncode == 0, result.stderr
    page = CLI_DOCS.read_text()
    assert f"## `{' '.join(['ml-worker', *path])}`" in page
    assert normalize(result.stdout) in page


# Failures that need no stack


def test_usage_error_exits_2():
    result = cli("search", "some-project")

    assert result.returncode == 2
    assert "Missing argument 'QUERY...'" in result.stderr


def test_invalid_setting_is_one_line_and_exits_2():
    result = cli("tasks", "list", env={"ML_WORKER_TASK_SERVICE": "nope"})

    assert result.returncode == 2
    assert error_line(result) == (
        "ml-worker: error: invalid MLWorkerConfig settings: task_service:"
        " Input should be 'icij' or 'datashare'"
    )
    assert "Traceback" not in result.stderr


def test_debug_shows_the_stack_trace():
    result = cli("--debug", "tasks", "list", env={"ML_WORKER_TASK_SERVICE": "nope"})

    assert result.returncode == 2
    assert "Traceback" in result.stderr


def test_unknown_task_state_exits_2():
    result = cli("tasks", "list", "--state", "sleeping")

    assert result.returncode == 2
    assert "unknown state 'sleeping': one of CREATED, QUEUED" in error_line(result)


def test_task_service_down_exits_3():
    url = closed_url()
    result = cli("tasks", "list", env={"ML_WORKER_TASK_SERVICE_URL": url})

    assert result.returncode == 3
    assert f"task service unreachable at {url}/api/tasks" in error_line(result)


def test_status_names_the_services_that_are_down(tmp_path):
    env = {
        "ML_WORKER_ES_ADDRESS": closed_url(),
        "ML_WORKER_TASK_SERVICE_URL": closed_url(),
        "ML_WORKER_VECTOR_DB_URI": str(tmp_path / "vectors"),
    }
    result = cli("status", env=env)

    assert result.returncode == 3
    assert re.search(r"Elasticsearch\s+│\s+down", result.stdout), result.stdout
    assert re.search(r"task service\s+│\s+down", result.stdout), result.stdout
    assert error_line(result).startswith("ml-worker: error: down: Elasticsearch,")
    assert "task service" in error_line(result)


def test_demo_says_which_service_is_missing_and_how_to_start_it(tmp_path):
    port = free_port()
    result = cli(
        "demo",
        "--workdir",
        str(tmp_path / "demo"),
        env={"ICIJ_WORKER_RABBITMQ_PORT": str(port)},
        module="ml_worker_dev",
    )

    assert result.returncode == 3
    line = error_line(result)
    assert f"RabbitMQ is not reachable at 127.0.0.1:{port}" in line
    assert "rabbitmq-server -detached" in line


@pytest.mark.parametrize(
    ("error_name", "code"),
    [
        ("ProjectNotVectorized", 4),
        ("UnknownTask", 4),
        ("ModelMismatch", 2),
        ("ValidationError", 2),
        ("TableBusy", 3),
        ("TaskServiceAuthError", 3),
        ("KeyError", 1),
        ("kind_of_remote", 1),  # a name in the module that is no error class
    ],
)
def test_a_workers_error_exits_with_the_code_of_its_kind(error_name, code):
    assert remote_error_code(error_name) == code


def test_a_workers_error_names_the_command_to_run_next():
    step = next_step("ProjectNotVectorized", {"project": "a b;rm"})

    assert step == "`ml-worker vectorize 'a b;rm'`"
    assert next_step("KeyError", {"project": "p"}) is None


async def test_a_task_not_done_has_no_result_yet(datashare, datashare_client):
    await datashare_client.create_task(
        "ping", {}, group=task_group("ping"), task_id="ping-1"
    )
    env = {
        "ML_WORKER_TASK_SERVICE": "datashare",
        "ML_WORKER_TASK_SERVICE_URL": datashare.url,
    }

    result = await asyncio.to_thread(cli, "tasks", "result", "ping-1", env=env)

    assert result.returncode == 1
    assert error_line(result) == (
        "ml-worker: error: task ping-1 is QUEUED: it has no result yet"
    )


def test_entry_script_without_a_command_shows_its_usage():
    result = subprocess.run(
        [str(ROOT / "ml-worker")], capture_output=True, text=True, check=False
    )

    assert result.returncode == 2
    assert "./ml-worker test" in result.stdout
    assert "./ml-worker demo" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "Usage: ml-worker [OPTIONS] COMMAND"),
        (["--debug", "tasks", "--help"], "Usage: ml-worker tasks"),
        (["search", "--help"], "Usage: ml-worker search"),
    ],
)
def test_entry_script_gives_global_options_to_the_cli(args, expected):
    result = subprocess.run(
        [str(ROOT / "ml-worker"), *args], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
    assert "docker: " not in result.stderr  # docker never saw them
    assert "Usage:  docker" not in result.stdout


def test_entry_script_refuses_unknown_words_itself():
    result = subprocess.run(
        [str(ROOT / "ml-worker"), "nonsense"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 2
    assert "No such command 'nonsense'" in result.stderr


# Against the real stack


@dataclass(frozen=True)
class Stack:
    project: str
    env: dict[str, str]
    rabbitmq_vhost: str
    n_docs: int


@pytest.fixture(scope="module")
def stack(session_workers, es_url):
    """The session's stack and workers, and the CLI's settings to reach them."""
    project = f"cli-{uuid.uuid4().hex[:8]}"
    n_docs, _ = asyncio.run(
        load_sample_corpus(MLWorkerConfig(es_address=es_url), project)
    )
    settings = session_workers.settings
    env = {
        "ML_WORKER_ES_ADDRESS": settings["es_address"],
        "ML_WORKER_TASK_SERVICE_URL": settings["task_service_url"],
        "ML_WORKER_VECTOR_DB_URI": settings["vector_db_uri"],
        "ICIJ_WORKER_RABBITMQ_VHOST": session_workers.vhost,
    }
    return Stack(project, env, session_workers.vhost, n_docs)


@pytest.fixture(scope="module")
def vectorized(stack) -> subprocess.CompletedProcess:
    """The project vectorized once by ``ml-worker vectorize``, for the module."""
    return cli("vectorize", stack.project, "--batch-size", "8", env=stack.env)


@pytest.mark.e2e
def test_workers_start_runs_every_kind_on_its_own_queue(stack, rabbitmq):
    """`-n 2`: two vectorizing workers, one search worker, and a fan-out worker
    for each vectorization it runs at once (``pool.FANOUT_WORKERS``)."""
    consumers = {
        kind: rabbitmq.task_queue_consumers(stack.rabbitmq_vhost, kind.group)
        for kind in WorkerKind
    }

    assert consumers == {
        WorkerKind.VECTORIZE: 2,
        WorkerKind.SEARCH: 1,
        WorkerKind.FANOUT: FANOUT_WORKERS,
    }


@pytest.mark.e2e
def test_vectorize_follows_every_batch_and_sums_up(stack, vectorized):
    n_batches = -(-stack.n_docs // 8)

    assert vectorized.returncode == 0, vectorized.stderr
    assert re.search(
        r"Task create_vectorization_tasks-\S+ submitted", vectorized.stderr
    )
    assert (
        f"Project {stack.project}: {stack.n_docs} documents in {n_batches} batches:"
        f" {stack.n_docs} new, 0 changed, 0 unchanged, 0 gone while it ran, 0 failed;"
        " 0 removed (no longer in the index);"
    ) in vectorized.stdout
    assert "model english (auto: 100% ENGLISH)." in vectorized.stdout


@pytest.mark.e2e
def test_search_prints_a_table_of_ranked_documents(stack, vectorized):
    args = ["search", stack.project, "9387421", "-n", "3", "--mode", "text"]
    result = cli(*args, env=stack.env)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "“9387421”"
    first_row = next(line for line in lines if line.startswith("│ 1 "))
    assert "Voyage report MV Kestrel Dawn" in first_row


@pytest.mark.e2e
def test_search_json_is_the_raw_result(stack, vectorized):
    queries = ["bribing a minister to sign the contract", "tailings dam leaking"]
    args = ["search", stack.project, *queries, "-n", "2", "--mode", "vector", "--json"]
    result = cli(*args, env=stack.env)

    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert [len(hits) for hits in results] == [2, 2]
    titles = {doc["title"]: doc["path"] for doc in load_corpus()}
    assert results[0][0]["title"] == "Re: our friend at the ministry"
    assert results[0][0]["path"] == titles["Re: our friend at the ministry"]
    assert results[1][0]["title"] == "Satellite analysis: Mbeko tailings dam"


@pytest.mark.e2e
def test_tasks_list_show_result_and_cancel(stack, vectorized):
    submitted = cli("vectorize", stack.project, "--no-wait", env=stack.env)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert re.fullmatch(r"create_vectorization_tasks-[0-9a-f-]{36}", task_id)

    listed = cli(
        "tasks", "list", "--name", "create_vectorization_tasks", "--json", env=stack.env
    )
    assert listed.returncode == 0, listed.stderr
    assert task_id in [t["id"] for t in json.loads(listed.stdout)]

    asyncio.run(_wait_done(stack, task_id))
    result = cli("tasks", "result", task_id, env=stack.env)
    assert result.returncode == 0, result.stderr
    n_batches = -(-stack.n_docs // MLWorkerConfig().vectorize_batch_size)
    summary = json.loads(result.stdout)
    assert summary["batches"] == n_batches
    # Nothing changed since the module's first run.
    assert (summary["unchanged"], summary["new"]) == (stack.n_docs, 0)
    assert (summary["model"], summary["model_choice"]) == (
        "english",
        "the project's table was created with it",
    )

    shown = cli("tasks", "show", task_id, env=stack.env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"state\s+DONE", shown.stdout)
    assert re.search(rf'args\.project\s+"{stack.project}"', shown.stdout)

    cancelled = cli("tasks", "cancel", task_id, env=stack.env)
    assert cancelled.returncode == 1
    assert f"task {task_id} is already DONE: nothing to cancel" in error_line(cancelled)


async def _wait_done(stack: Stack, task_id: str) -> None:
    from ml_worker.engines import engine_for

    config = MLWorkerConfig(task_service_url=stack.env["ML_WORKER_TASK_SERVICE_URL"])
    async with engine_for(config).task_client() as client:
        await wait_ended(client, [task_id])


# Escape sequences (a window title, a screen clear, an 8-bit CSI), a right-to-left
# override and rich markup, as a hostile document or client may send them.
HOSTILE = "\x1b]0;owned\x07\x1b[2J\x9b31m\u202e[bold red]x"
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.e2e
def test_tasks_print_hostile_arguments_and_errors_as_text(stack):
    # An unknown argument: the task's error quotes its name as it is.
    args = {"project": HOSTILE, "queries": [HOSTILE], HOSTILE: 1}
    task_id = asyncio.run(_create_task(stack, "find_most_similar", args))
    asyncio.run(_wait_done(stack, task_id))

    shown = cli("tasks", "show", task_id, env=stack.env)
    result = cli("tasks", "result", task_id, env=stack.env)
    listed = cli("tasks", "list", "--name", "find_most_similar", env=stack.env)
    debug = cli("--debug", "tasks", "result", task_id, env=stack.env)

    assert shown.returncode == 0, shown.stderr
    assert RAW.findall(shown.stdout) == []
    error = r"error\s+InvalidArguments: unknown argument.*\\x1b\]0;owned\\x07"
    assert re.search(error, shown.stdout, re.DOTALL)
    assert re.search(r"args\.\\x1b\]0;owned\\x07\\x1b\[", shown.stdout)
    assert "[bold red]x" in shown.stdout
    assert result.returncode == 2  # a bad argument: the task's input was wrong
    assert RAW.findall(result.stderr) == []
    assert "\\x1b]0;owned\\x07" in error_line(result)
    assert listed.returncode == 0 and RAW.findall(listed.stdout) == []
    assert "Traceback" in debug.stderr and RAW.findall(debug.stderr) == []
    as_json = cli("tasks", "show", task_id, "--json", env=stack.env)
    assert json.loads(as_json.stdout)["args"] == args
    assert RAW.findall(as_json.stdout) == []


async def _create_task(stack: Stack, name: str, args: dict) -> str:
    from ml_worker.engines import engine_for

    config = MLWorkerConfig(task_service_url=stack.env["ML_WORKER_TASK_SERVICE_URL"])
    async with engine_for(config).task_client() as client:
        return await client.create_task(name, args, group=task_group(name))


@pytest.mark.e2e
def test_unknown_project_exits_4(stack):
    vectorize = cli("vectorize", "no-such-project", env=stack.env)
    search = cli("search", "no-such-project", "anything", env=stack.env)

    assert vectorize.returncode == 4
    assert 'UnknownProject: project "no-such-project" has no Elasticsearch index' in (
        error_line(vectorize)
    )
    assert search.returncode == 4
    assert 'ProjectNotVectorized: project "no-such-project"' in error_line(search)
    assert error_line(search).endswith("next: `ml-worker vectorize no-such-project`")


@pytest.mark.e2e
def test_unknown_task_exits_4(stack):
    result = cli("tasks", "show", "no-such-task", env=stack.env)

    assert result.returncode == 4
    assert error_line(result).startswith("ml-worker: error: unknown task no-such-task")


@pytest.mark.e2e
def test_status_lists_the_vectorized_project(stack, vectorized):
    result = cli("status", env=stack.env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(re.findall(r"│\s+up\s+│", result.stdout)) == 4
    row = next(line for line in result.stdout.splitlines() if stack.project in line)
    assert re.search(rf"{stack.project}\s+│\s+{stack.n_docs}\s+│\s+\d+\s+│", row)
    # The packaged model by its alias, and why the project has it (a long cell
    # may wrap).
    assert "english (auto:" in row and "ENGLISH)" in result.stdout
    for kind, queue, workers in [
        ("vectorize", "TASK.PYTHON", 2),
        ("search", "TASK.PYTHON_SEARCH", 1),
        ("fanout", "TASK.PYTHON_FANOUT", FANOUT_WORKERS),
    ]:
        assert re.search(
            # Waiting and running: the management API's figures lag the tasks
            # of earlier tests by up to its statistics interval.
            rf"{kind}\s+│\s+{queue}\s+│\s+{workers}\s+│\s+\d+\s+│\s+\d+\s",
            result.stdout,
        ), result.stdout
