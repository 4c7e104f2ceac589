"""The tasks on Temporal: the expectations of test_e2e.py, on the other engine.

The Temporal server is the ``temporal_address`` fixture's; the workers are real
processes started by ``ml-worker workers start`` with ``ML_WORKER_ENGINE=temporal``
(two vectorizing workers, one search worker, two fan-out workers); Elasticsearch
is the ``es_url`` fixture's. Workflows are started as Datashare starts them: by
name, with one ``args`` object, on the task queue named by the task's group,
lower-cased.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.service import RPCError, RPCStatusCode

from ml_worker import store
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import task_group
from ml_worker.temporal.connection import connect
from ml_worker.temporal.queues import group_queue
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from ml_worker_dev.local_stack import temporal_worker_pool, wait_for_temporal_workers
from tests.corpus import filler
from tests.known_items import (
    BATCH_SIZE,
    N_DOCS,
    SEARCH,
    assert_known_items_first,
    seed_known_items,
)
from tests.tables import assert_table_exact, seed
from tests.test_cli import cli

pytestmark = pytest.mark.temporal

# Ids read a page at a time: the e2e project takes four runs of the workflow.
PAGE_SIZE = 64
READY_TIMEOUT_S = 600


@dataclass
class Stack:
    pool_pid: int
    vectors: str
    address: str
    es_url: str

    def vectorizing_workers(self) -> list[int]:
        """The pids of the pool's vectorizing worker processes."""
        pids = []
        for child in Path(f"/proc/{self.pool_pid}/task").glob("*/children"):
            for pid in child.read_text().split():
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"ml_worker.temporal" in cmdline and b"vectorize" in cmdline:
                    pids.append(int(pid))
        return pids


@pytest.fixture(scope="module")
def stack(tmp_path_factory, es_url, temporal_address):
    workdir = tmp_path_factory.mktemp("temporal-stack")
    vectors = str(workdir / "vectors")
    config = {
        "es_address": es_url,
        "vector_db_uri": vectors,
        "temporal_address": temporal_address,
        "es_page_size": PAGE_SIZE,
        "es_retry_s": 30.0,
        "torch_threads": 1,
    }
    with temporal_worker_pool(workdir, n_workers=2, ml_worker_config=config) as pool:
        log = workdir / "workers.log"
        wait_for_temporal_workers(
            temporal_address, 2, pool, log=log, timeout_s=READY_TIMEOUT_S
        )
        yield Stack(pool.pid, vectors, temporal_address, es_url)


@pytest.fixture
async def client(stack) -> Client:
    return await connect(MLWorkerConfig(temporal_address=stack.address))


async def start(client: Client, name: str, args: dict) -> WorkflowHandle:
    """The workflow of task ``name``, started as Datashare starts it: on its
    group's queue, lower-cased."""
    return await client.start_workflow(
        name,
        args,
        id=f"{name}-{uuid.uuid4()}",
        task_queue=group_queue(task_group(name)),
    )


async def result_of(handle: WorkflowHandle):
    """A task's result: JSON text, as the workflows return it for Datashare."""
    result = await handle.result()
    assert isinstance(result, str), result
    return json.loads(result)


async def run(client: Client, name: str, args: dict):
    return await result_of(await start(client, name, args))


async def failure(client: Client, name: str, args: dict) -> ApplicationError:
    with pytest.raises(WorkflowFailureError) as raised:
        await run(client, name, args)
    cause = raised.value.cause
    assert isinstance(cause, ApplicationError), cause
    return cause


async def events(client: Client, handle: WorkflowHandle, run_id: str | None = None):
    """The history of the workflow's latest run (or of ``run_id``)."""
    run = client.get_workflow_handle(handle.id, run_id=run_id)
    return [e async for e in run.fetch_history_events()]


async def run_histories(client: Client, handle: WorkflowHandle) -> list[list]:
    """The history of each run of an ended workflow, first to last: a
    vectorization continues as new after each page of ids."""
    histories, run_id = [], handle.first_execution_run_id
    while run_id is not None:
        history = await events(client, handle, run_id)
        histories.append(history)
        last = history[-1]
        run_id = None
        if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            attributes = last.workflow_execution_continued_as_new_event_attributes
            run_id = attributes.new_execution_run_id
    return histories


def batches_scheduled(history) -> list:
    """The ``vectorize_docs`` activities the run scheduled: its batches."""
    return [
        e
        for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name
        == "vectorize_docs"
    ]


def batches_started(history) -> list:
    """The started events of the run's batches (not of its other activities)."""
    batches = {e.event_id for e in batches_scheduled(history)}
    return [
        e
        for e in history
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in batches
    ]


async def batch_documents(client: Client, scheduled) -> list[str]:
    """The documents of a scheduled batch, from its ``args``."""
    payloads = scheduled.activity_task_scheduled_event_attributes.input.payloads
    (args,) = await client.data_converter.decode(payloads)
    return args["docs"]


async def test_vectorize_and_search_a_project(stack, client, es, project):
    doc_ids = await seed_known_items(es, project)

    # The user as Datashare sends it, granted the project.
    user = {
        "id": "jdoe",
        "details": {"groups_by_applications": {"datashare": [project]}},
    }
    args = {"project": project, "batch_size": BATCH_SIZE, "user": user}
    handle = await start(client, "create_vectorization_tasks", args)
    summary = await result_of(handle)
    assert summary == {
        "project": project,
        "model": "english",
        "model_choice": "auto: 100% ENGLISH",
        "batches": -(-N_DOCS // BATCH_SIZE),
        "documents": N_DOCS,
        "new": N_DOCS,
        "changed": 0,
        "unchanged": 0,
        "missing": 0,
        "removed": 0,
        "failed": 0,
        "failures": [],
    }
    # Continued as new at each page: each run's history stays that of a page.
    description = await handle.describe()
    assert description.run_id != handle.first_execution_run_id
    progress = {a.key.name: a.value for a in description.typed_search_attributes}
    assert (progress["Progress"], progress["MaxProgress"]) == (N_DOCS, N_DOCS)
    histories = await run_histories(client, handle)
    assert len(histories) == -(-N_DOCS // PAGE_SIZE)
    assert sum(len(batches_scheduled(h)) for h in histories) == summary["batches"]
    started = [
        e.activity_task_started_event_attributes.identity
        for e in batches_started(histories[0])
    ]
    assert len(set(started)) >= 2, "the batches ran on one worker only"

    table = store.open_table(store.connect(stack.vectors), project)
    assert {r["doc_id"] for r in table.to_arrow().select(["doc_id"]).to_pylist()} == (
        doc_ids
    )
    await assert_table_exact(table, es, project)

    results = await run(client, "find_most_similar", {"project": project, **SEARCH})
    assert_known_items_first(results)


async def test_a_worker_killed_mid_batch(stack, client, es, project):
    rng = random.Random(3)
    long_docs = {f"doc-{i:04d}": filler(rng, 400) for i in range(0, 40, 2)}
    doc_ids = await seed(es, project, 48, special=long_docs)
    args = {"project": project, "batch_size": 2}
    handle = await start(client, "create_vectorization_tasks", args)
    await _wait_for_running_batch(handle)
    victim = stack.vectorizing_workers()[0]
    os.kill(victim, signal.SIGKILL)

    summary = await result_of(handle)
    assert (summary["documents"], summary["failed"]) == (len(doc_ids), 0), summary
    attempts = [
        e.activity_task_started_event_attributes.attempt
        for h in await run_histories(client, handle)
        for e in batches_started(h)
    ]
    assert max(attempts) >= 2, "no batch was retried"
    table = store.open_table(store.connect(stack.vectors), project)
    await assert_table_exact(table, es, project)


async def _wait_for_running_batch(handle: WorkflowHandle) -> None:
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(
            a.activity_type.name == "vectorize_docs"
            and a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            for a in pending
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("no batch ever started")


async def test_a_cancelled_vectorization_stops_creating_batches(
    stack, client, es, project
):
    n_docs = 300
    await seed(es, project, n_docs)
    handle = await start(
        client, "create_vectorization_tasks", {"project": project, "batch_size": 1}
    )
    db = store.connect(stack.vectors)
    for _ in range(6000):
        tables = store.project_tables(db)
        if project in tables and store.open_table(db, project).count_rows() >= 5:
            break
        await asyncio.sleep(0.1)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError) as raised:
        await handle.result()
    assert isinstance(raised.value.cause, CancelledError)

    histories = await run_histories(client, handle)
    history = histories[-1]
    cancelled_at = next(
        i
        for i, e in enumerate(history)
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    )
    scheduled_after = [
        e
        for e in history[cancelled_at:]
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled_after == []
    # Only the batches scheduled before the cancel ever write (one whose write
    # was under way may still land): a few, not the project's.
    scheduled = {
        doc
        for h in histories
        for batch in batches_scheduled(h)
        for doc in await batch_documents(client, batch)
    }
    assert len(scheduled) < n_docs
    rows = store.open_table(db, project).to_arrow().select(["doc_id"]).to_pylist()
    assert {r["doc_id"] for r in rows} <= scheduled


async def test_bad_input_fails_the_workflow_naming_the_problem(client, project, es):
    await seed(es, project, 4)
    error = await failure(
        client, "create_vectorization_tasks", {"project": project, "batch_size": 0}
    )
    assert "invalid argument batch_size" in error.message
    assert "greater than 0, got 0" in error.message
    error = await failure(
        client, "create_vectorization_tasks", {"project": project, "colour": "red"}
    )
    assert "unknown argument(s) for task create_vectorization_tasks: colour" in (
        error.message
    )
    error = await failure(
        client, "find_most_similar", {"project": project, "queries": "not a list"}
    )
    assert "invalid argument queries" in error.message
    assert "valid list, got 'not a list'" in error.message
    error = await failure(
        client, "find_most_similar", {"project": "no-such-project", "queries": ["x"]}
    )
    assert "no-such-project" in error.message
    assert error.type == "ProjectNotVectorized"  # the CLI's exit code follows it
    # The workers keep serving.
    assert await run(client, "ping", {}) == "pong"


async def test_the_command_line_on_temporal(stack, es, project):
    doc_ids = await seed(es, project, 20)
    env = {
        "ML_WORKER_ENGINE": "temporal",
        "ML_WORKER_TEMPORAL_ADDRESS": stack.address,
        "ML_WORKER_ES_ADDRESS": stack.es_url,
        "ML_WORKER_VECTOR_DB_URI": stack.vectors,
    }
    status = cli("status", env=env)
    assert status.returncode == 0, status.stderr
    assert "Task queues" in status.stdout, status.stdout
    # The workers taking the batches: the pool's two at least (pollers seen in
    # the last minutes, a killed worker's too, beside its successor).
    taking = re.search(
        r"vectorize\s+│\s+python, vectorize_docs\s+│\s+(\d+)\s+│", status.stdout
    )
    assert taking, status.stdout
    assert int(taking[1]) >= 2, status.stdout

    vectorized = cli("vectorize", project, "--batch-size", "4", env=env)
    assert vectorized.returncode == 0, vectorized.stderr
    assert f"{len(doc_ids)} documents in 5 batches" in vectorized.stdout

    found = cli("search", project, "the offshore trust", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)

    listed = cli("tasks", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "create_vectorization_tasks" in listed.stdout

    down = cli("status", env={**env, "ML_WORKER_TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert down.returncode == 3
    assert "Temporal" in down.stdout


async def test_a_namespace_without_the_progress_attributes_is_named(stack, client):
    # A namespace as a bare Temporal set-up makes it. The name is fixed: against a
    # real server, the test leaves one namespace behind, whatever the runs.
    namespace = "ml-worker-test-no-attributes"
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(seconds=86400),
            )
        )
    except RPCError as e:
        if e.status is not RPCStatusCode.ALREADY_EXISTS:
            raise
    env = {
        "ML_WORKER_ENGINE": "temporal",
        "ML_WORKER_TEMPORAL_ADDRESS": stack.address,
        "ML_WORKER_TEMPORAL_NAMESPACE": namespace,
        "ML_WORKER_ES_ADDRESS": stack.es_url,
        "ML_WORKER_VECTOR_DB_URI": stack.vectors,
    }
    create = f"temporal operator search-attribute create -n {namespace} --name"

    status = cli("status", env={**env, "COLUMNS": "400"})
    # A fan-out worker refuses to start rather than fail each workflow task.
    worker = subprocess.run(
        [sys.executable, "-m", "ml_worker.temporal", "fanout"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert status.returncode == 3, status.stdout + status.stderr
    assert "lacks the search attribute(s) Progress, MaxProgress, UserId" in (
        status.stdout
    ), status.stdout
    assert worker.returncode == 2, worker.stderr
    assert (
        f"{create} Progress --type Double; {create} MaxProgress --type Double;"
        f" {create} UserId --type Keyword"
    ) in worker.stderr, worker.stderr
    assert "Traceback" not in worker.stderr


# test_fair_share.py's projects, a document a batch; the large one twice as
# large: Temporal hands a queue's tasks out in no strict order (a queue has
# partitions), so a batch of the small project may wait behind several of the
# large one's newer batches (9 seen here), not behind all of them.
LARGE_BATCHES = 48
SMALL_BATCHES = 2


async def _index_long_documents(es, project: str, n_docs: int) -> None:
    """Long documents (several passages each): a batch of one takes a while."""
    rng = random.Random(n_docs)
    await create_project_index(es, project)
    docs = [
        (f"{project}-{i}", document_source(filler(rng, 60), path=f"/{i}"), None)
        for i in range(n_docs)
    ]
    await bulk_index(es, project, docs)


async def test_a_small_project_is_not_held_behind_a_large_one(stack, client, es):
    """Two projects vectorized at once share the workers (test_fair_share.py's
    twin): a small project started while a large one runs has its batches
    scheduled beside the large one's few in flight, so it ends before the large
    one has even scheduled its last batch, where queued behind all of the large
    one's batches it ended after them."""
    suffix = uuid.uuid4().hex[:10]
    large, small = f"fair-large-{suffix}", f"fair-small-{suffix}"
    await _index_long_documents(es, large, LARGE_BATCHES)
    await _index_long_documents(es, small, SMALL_BATCHES)

    args = {"batch_size": 1}
    large_run = await start(
        client, "create_vectorization_tasks", {"project": large, **args}
    )
    await _wait_for_running_batch(large_run)
    small_run = await start(
        client, "create_vectorization_tasks", {"project": small, **args}
    )
    small_summary = await result_of(small_run)
    large_summary = await result_of(large_run)

    assert (small_summary["batches"], small_summary["new"]) == (SMALL_BATCHES,) * 2
    assert (large_summary["batches"], large_summary["new"]) == (LARGE_BATCHES,) * 2
    # By the server's clock: the small run's end among the large one's batches.
    small_history = (await run_histories(client, small_run))[-1]
    assert small_history[-1].event_type == (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
    )
    small_ended = small_history[-1].event_time.ToDatetime()
    large_scheduled = [
        e.event_time.ToDatetime()
        for h in await run_histories(client, large_run)
        for e in batches_scheduled(h)
    ]
    assert len(large_scheduled) == LARGE_BATCHES
    before = sum(t < small_ended for t in large_scheduled)
    print(f"{before} of the large project's {LARGE_BATCHES} batches scheduled first")
    assert before < LARGE_BATCHES
