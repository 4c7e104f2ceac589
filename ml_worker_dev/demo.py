"""``ml-worker demo``: the whole pipeline on a bundled sample corpus, real services.

It loads the corpus into a fresh project index the way Datashare lays one out, starts
icij-worker's task service and a pool of workers on this machine's RabbitMQ and
PostgreSQL (or, with ``--engine temporal``, a Temporal development server and
Temporal workers), vectorizes the project through the task API and runs a few
searches.
Everything it starts is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from hashlib import sha256
from pathlib import Path

from elasticsearch import ConnectionError as ESConnectionError

from ml_worker.cli.errors import CLIError, ExitCode
from ml_worker.cli.follow import (
    follow_vectorization,
    print_vectorization_summary,
    search_project,
    submit_vectorization,
)
from ml_worker.cli.main import PROGRESS_LINE_EVERY_S
from ml_worker.cli.output import duration, err, hits_table, out
from ml_worker.config import EngineName, MLWorkerConfig
from ml_worker.engines import engine_for
from ml_worker.es_client import es_client_from
from ml_worker_dev import datashare_index
from ml_worker_dev.local_stack import (
    Postgres,
    RabbitMQ,
    environment,
    rabbitmq_from_env,
    temporal_server,
    temporal_worker_pool,
    wait_for_temporal_workers,
)
from ml_worker_dev.stack import elasticsearch, service_and_workers

CORPUS = Path(__file__).parent / "data" / "demo_corpus.jsonl"
# Small batches, so that the workers share the run and the progress shows.
BATCH_SIZE = 4
RESULTS_PER_QUERY = 3
# Marks a folder as the demo's own, which it may empty.
_WORKDIR_MARK = ".ml-worker-demo"

# (query, search mode, what it shows)
QUERIES = [
    (
        "bribing a minister to sign the contract",
        "vector",
        "Meaning only: the e-mail found speaks of 'the envelope' for 'our friend at"
        " the ministry', none of the query's words.",
    ),
    (
        "9387421",
        "hybrid",
        "Found by its words: a rare exact keyword, a ship's IMO number, which"
        " meaning alone cannot find.",
    ),
    (
        "patients harmed in a drug trial and the regulator kept in the dark",
        "hybrid",
        "Meaning and words together: the memo and the reply that buried it.",
    ),
    (
        "who is really behind the yacht",
        "hybrid",
        "Hidden ownership, in other words than the documents'.",
    ),
]


def load_corpus() -> list[dict]:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def run_demo(
    *,
    workdir: Path,
    n_workers: int,
    engine: EngineName = EngineName.ICIJ,
    started: float | None = None,
) -> None:
    """``started``: the ``time.monotonic()`` the elapsed time counts from."""
    started = time.monotonic() if started is None else started
    if engine is EngineName.TEMPORAL:
        _reset_workdir(workdir)
        with ExitStack() as stack:
            _run_temporal(stack, workdir, n_workers)
        out.print(f"Demo done in {duration(time.monotonic() - started)}.")
        return
    rabbitmq, postgres = rabbitmq_from_env(), Postgres()
    rabbitmq.check()
    postgres.check()
    out.print(
        f"RabbitMQ at {rabbitmq.host}:{rabbitmq.port} and PostgreSQL at"
        f" {postgres.host}:{postgres.port} answer."
    )
    _reset_workdir(workdir)
    with ExitStack() as stack:
        stack.callback(signal.signal, signal.SIGINT, signal.getsignal(signal.SIGINT))
        try:
            _run(stack, workdir, n_workers, rabbitmq, postgres)
        finally:
            # Before the services stop: a second Ctrl-C must not leave them running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            err.print("Stopping the services started by the demo…")
    out.print(f"Demo done in {duration(time.monotonic() - started)}.")


def _run(
    stack: ExitStack,
    workdir: Path,
    n_workers: int,
    rabbitmq: RabbitMQ,
    postgres: Postgres,
) -> None:
    project = f"demo-{uuid.uuid4().hex[:6]}"
    es_url = stack.enter_context(elasticsearch(MLWorkerConfig()))
    stack.enter_context(_project_index(es_url, project))
    step = time.monotonic()
    url, _, _ = stack.enter_context(
        service_and_workers(
            workdir,
            n_workers=n_workers,
            rabbitmq=rabbitmq,
            postgres=postgres,
            es_url=es_url,
        )
    )
    elapsed = duration(time.monotonic() - step)
    log = workdir / "workers.log"
    out.print(
        f"Task service at {url} and {n_workers} workers ready ({elapsed}, logs in"
        f" {log})."
    )
    asyncio.run(_vectorize_and_search(project))


def _run_temporal(stack: ExitStack, workdir: Path, n_workers: int) -> None:
    """The same run on Temporal: the Temporal CLI's development server and Temporal
    workers started by ``ml-worker workers start``."""
    project = f"demo-{uuid.uuid4().hex[:6]}"
    es_url = stack.enter_context(elasticsearch(MLWorkerConfig()))
    stack.enter_context(_project_index(es_url, project))
    step = time.monotonic()
    address = stack.enter_context(temporal_server(workdir))
    out.print(f"Temporal server at {address} ({duration(time.monotonic() - step)}).")
    worker_settings = {
        "engine": EngineName.TEMPORAL.value,
        "es_address": es_url,
        "temporal_address": address,
        "vector_db_uri": str((workdir / "vectors").resolve()),
    }
    # The workers' environment wins over their settings file: it must agree.
    stack.enter_context(
        environment(**{f"ML_WORKER_{k.upper()}": v for k, v in worker_settings.items()})
    )
    step = time.monotonic()
    pool = stack.enter_context(
        temporal_worker_pool(
            workdir, n_workers=n_workers, ml_worker_config=worker_settings
        )
    )
    log = workdir / "workers.log"
    with err.status(f"Starting {n_workers} workers…"):
        wait_for_temporal_workers(address, n_workers, pool, log=log)
    elapsed = duration(time.monotonic() - step)
    out.print(f"{n_workers} workers ready ({elapsed}, logs in {log}).")
    asyncio.run(_vectorize_and_search(project))


def _reset_workdir(workdir: Path) -> None:
    if workdir.exists() and any(workdir.iterdir()):
        if not (workdir / _WORKDIR_MARK).exists():
            msg = (
                f"{workdir} is not empty and not a demo folder: give another --workdir"
            )
            raise CLIError(msg, ExitCode.USAGE)
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / _WORKDIR_MARK).touch()


@contextmanager
def _project_index(es_url: str, project: str) -> Iterator[None]:
    """The sample corpus in a new project index, deleted afterwards."""
    config = MLWorkerConfig(es_address=es_url)
    n_docs, n_entities = asyncio.run(load_sample_corpus(config, project))
    out.print(
        f"Loaded {n_docs} documents and {n_entities} named entities into project"
        f" {project}."
    )
    try:
        yield
    finally:
        asyncio.run(_delete_index(config, project))


async def load_sample_corpus(config: MLWorkerConfig, project: str) -> tuple[int, int]:
    """Index the sample corpus as project ``project``: (documents, named entities)."""
    rows = list(_index_rows(load_corpus()))
    es = es_client_from(config)
    try:
        await datashare_index.create_project_index(es, project)
        await datashare_index.bulk_index(es, project, rows)
    finally:
        await es.close()
    n_entities = sum(1 for _, source, _ in rows if source["type"] == "NamedEntity")
    return len(rows) - n_entities, n_entities


def _index_rows(docs: list[dict]) -> Iterator[tuple[str, dict, str | None]]:
    for doc in docs:
        root_id = doc.get("root_id")
        source = datashare_index.document_source(
            doc["content"],
            path=doc["path"],
            root_id=root_id,
            content_type=doc.get("content_type", "text/plain"),
            title=doc["title"],
            tags=doc.get("tags"),
        )
        yield doc["id"], source, root_id
        for entity in doc.get("entities", []):
            entity_id = sha256(f"{doc['id']}/{entity['mention']}".encode()).hexdigest()
            ne = datashare_index.named_entity_source(
                entity["mention"], doc_id=doc["id"], category=entity["category"]
            )
            yield entity_id, ne, root_id or doc["id"]


async def _delete_index(config: MLWorkerConfig, project: str) -> None:
    es = es_client_from(config)
    try:
        await es.indices.delete(index=project, ignore_unavailable=True)
    except ESConnectionError:
        pass  # an emulator stopped by Ctrl-C with us: nothing left to delete
    finally:
        await es.close()


async def _vectorize_and_search(project: str) -> None:
    async with engine_for(MLWorkerConfig()).task_client() as client:
        task_id = await submit_vectorization(client, project, batch_size=BATCH_SIZE)
        out.print(f"Task {task_id} submitted.")
        run = await follow_vectorization(
            client, task_id, project, line_every_s=PROGRESS_LINE_EVERY_S
        )
        print_vectorization_summary(run)
        out.print(f"\nSearching project {project}:\n")
        for query, mode, why in QUERIES:
            [hits] = await search_project(
                client, project, [query], n_similar=RESULTS_PER_QUERY, mode=mode
            )
            table = hits_table(query, hits)
            table.caption = f"{mode} search. {why}"
            table.caption_justify = "left"
            out.print(table)
            out.print()
