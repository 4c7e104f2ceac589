"""Project tables in object storage (S3's API), written by many processes at once.

Every scenario checks the table passage by passage against what the documents'
contents must give. Writer processes are spawned, never forked: a process forked
after LanceDB was used writes nothing.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

from ml_worker import store, tasks, upkeep, vectorization
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.engines import engine_for
from ml_worker.icij.app import app
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from tests.faults import ConditionalWritesIgnored
from tests.tables import (
    assert_holds,
    document,
    document_versions,
    stand_in_batches,
)

pytestmark = pytest.mark.scale

N_DOCS = 96
BATCH_DOCS = 8
SPAWN = multiprocessing.get_context("spawn")


@pytest.fixture
def s3_db(s3, s3_bucket):
    """(uri, storage options) of a database in a fresh bucket."""
    return f"s3://{s3_bucket}/vectors", s3.storage_options()


@pytest.fixture
def s3_table(s3_db, project):
    uri, options = s3_db
    db = store.connect(uri, storage_options=options)
    return store.open_or_create_table(
        db, project, model=ENGLISH_MODEL, embed_batch_size=8
    )


def _write(uri: str, options: dict, project: str, phases: list[list], sync) -> None:
    """A writer process: each phase's batches in order, through the product's
    write path; every writer starts a phase at the same time."""
    table = store.writable_table(store.connect(uri, storage_options=options), project)
    for batches in phases:
        sync.wait()
        for doc_ids, rows in batches:
            store.replace_documents(table, doc_ids, rows)
        sync.wait()


def test_four_writers_each_batch_twice(s3_db, s3_table, project):
    uri, options = s3_db
    # Every document written, then every document changed.
    versions = [document_versions(1, N_DOCS), document_versions(2, N_DOCS)]
    plans: list[list[list]] = [[], [], [], []]  # each writer's batches a phase
    for docs in versions:
        batches = stand_in_batches(s3_table, docs, BATCH_DOCS)
        half = len(batches) // 2
        # Writers 0 and 1 write the same batches at the same time; writers 2 and 3
        # the others, in opposite orders: one after the other, crossing midway.
        shares = [batches[:half], batches[:half], batches[half:], batches[half:][::-1]]
        for plan, share in zip(plans, shares, strict=True):
            plan.append(share)
    # Started once for both versions: a process takes seconds to import the model's
    # libraries.
    with _writers(uri, options, project, plans) as sync:
        for docs in versions:
            sync.wait()  # the writers start
            sync.wait()  # the writers are done
            assert_holds(s3_table, docs)


@contextmanager
def _writers(uri: str, options: dict, project: str, plans: list[list]):
    """One writer process a plan, each phase started together; yields the barrier
    the test meets them at, before and after each phase."""
    sync = SPAWN.Barrier(len(plans) + 1, timeout=300)
    writers = [
        SPAWN.Process(target=_write, args=(uri, options, project, plan, sync))
        for plan in plans
    ]
    for writer in writers:
        writer.start()
    try:
        yield sync
    except BaseException:
        sync.abort()  # no writer waits for a phase that will not come
        raise
    finally:
        for writer in writers:
            writer.join(timeout=60)
            if writer.exitcode is None:
                writer.kill()
    assert [w.exitcode for w in writers] == [0] * len(writers)


def test_writers_of_the_same_batches_at_once_on_an_indexed_table(
    s3_db, s3_table, project
):
    """Lance misses concurrent inserts of one key when the writes look keys up in
    its scalar index (lance-format/lance#9238): the writes count their keys after
    committing and leave one row each."""
    uri, options = s3_db
    seed = [document("doc-seed", "A first document, so that the table has indices.")]
    for doc_ids, rows in stand_in_batches(s3_table, seed, BATCH_DOCS):
        store.replace_documents(s3_table, doc_ids, rows)
    upkeep.ensure_indices(s3_table)
    assert {i.name for i in s3_table.list_indices()} >= {"passage_id_idx", "doc_id_idx"}
    docs = document_versions(3, 48)
    batches = stand_in_batches(s3_table, docs, BATCH_DOCS)
    plans = [[batches] for _ in range(4)]  # every writer, every batch, at once
    with _writers(uri, options, project, plans) as sync:
        sync.wait()
        sync.wait()
        assert_holds(s3_table, seed + docs)


def _killed_writer(uri, options, project, batches, between_commits, started) -> None:
    """Writes the batches over and over until it is killed."""
    table = store.writable_table(store.connect(uri, storage_options=options), project)
    if between_commits:
        # The merge-insert is committed; the delete of the old version never comes.
        def stall(_where):
            started.set()
            time.sleep(3600)

        # Never undone: the process is killed.
        pytest.MonkeyPatch().setattr(table, "delete", stall)
    else:
        started.set()
    while True:
        for doc_ids, rows in batches:
            store.replace_documents(table, doc_ids, rows)


@pytest.mark.parametrize("between_commits", [True, False], ids=["between", "anywhere"])
def test_a_writer_killed_mid_write_then_the_batch_again(
    s3_db, s3_table, project, between_commits
):
    uri, options = s3_db
    old, new = document_versions(1, 24), document_versions(2, 24)
    for doc_ids, rows in stand_in_batches(s3_table, old, BATCH_DOCS):
        store.replace_documents(s3_table, doc_ids, rows)
    started = SPAWN.Event()
    batches = stand_in_batches(s3_table, new, BATCH_DOCS) + stand_in_batches(
        s3_table, old, BATCH_DOCS
    )
    writer = SPAWN.Process(
        target=_killed_writer,
        args=(uri, options, project, batches, between_commits, started),
    )
    writer.start()
    try:
        assert started.wait(120), "the writer did not start"
        delay = 0.5 if between_commits else random.uniform(0.5, 4.0)
        time.sleep(delay)
    finally:
        writer.kill()  # SIGKILL
        writer.join()
    table = store.writable_table(store.connect(uri, storage_options=options), project)
    if between_commits:
        # The first batch's changed documents have the rows of two versions.
        first = [
            n.id
            for o, n in zip(old, new[:BATCH_DOCS], strict=False)
            if o.content != n.content
        ]
        assert {len(h) for h in store.stored_hashes(table, first).values()} == {2}

    # The batch again, as a redelivered task writes it (its model, its check).
    for i in range(0, len(new), BATCH_DOCS):
        vectorization.write_documents(
            table, new[i : i + BATCH_DOCS], max_chars=10**6, requested=BATCH_DOCS
        )

    assert_holds(table, new)


async def test_a_store_ignoring_conditional_writes_is_refused(
    s3, s3_bucket, es, es_url, project
):
    url = urlparse(s3.url)
    if url.scheme != "http":
        pytest.skip("the fault proxy speaks plain HTTP only")
    await create_project_index(es, project)
    source = document_source("The lease.", path="/lease.txt")
    await bulk_index(es, project, [("doc-1", source, None)])
    proxy = ConditionalWritesIgnored(url.hostname, url.port)
    config = MLWorkerConfig(
        es_address=es_url,
        vector_db_uri=f"s3://{s3_bucket}/vectors",
        vector_db_storage_options=s3.storage_options(proxy.url),
    )
    vector_db = store.connect_from(config)
    try:
        with pytest.raises(store.UnsafeObjectStore, match=r"s3\+ddb://") as error:
            await tasks.prepare_vectorization(
                project,
                config=config,
                es_client=es,
                vector_db=vector_db,
                engine=engine_for(config),
            )
        assert f"s3://{s3_bucket}/vectors" in str(error.value)
        assert _objects(s3, s3_bucket) == []

        # A table made through the store itself: a batch written through the
        # proxy is refused before it writes anything.
        direct = store.connect(
            config.vector_db_uri, storage_options=s3.storage_options()
        )
        store.open_or_create_table(
            direct, project, model=ENGLISH_MODEL, embed_batch_size=8
        )
        before = _objects(s3, s3_bucket)
        with pytest.raises(store.UnsafeObjectStore, match=r"s3\+ddb://"):
            await tasks.vectorize_docs(
                ["doc-1"], project, config=config, es_client=es, vector_db=vector_db
            )
        assert _objects(s3, s3_bucket) == before
    finally:
        proxy.close()


def _objects(s3, bucket: str) -> list[tuple[str, str]]:
    listed = s3.client().list_objects_v2(Bucket=bucket).get("Contents", [])
    return sorted((o["Key"], o["ETag"]) for o in listed)


async def test_storage_options_stay_out_of_the_logs(
    s3, s3_bucket, es_url, monkeypatch, caplog
):
    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", f"s3://{s3_bucket}/vectors")
    monkeypatch.setenv(
        "ML_WORKER_VECTOR_DB_STORAGE_OPTIONS", json.dumps(s3.storage_options())
    )
    caplog.set_level("DEBUG")
    from ml_worker import dependencies

    async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
        # The options reach the store: the worker lists its (empty) database.
        vector_db = dependencies.lifespan_vector_db()
        assert await asyncio.to_thread(lambda: vector_db.list_tables().tables) == []
    assert "worker config" in caplog.text and "vector_db_storage_options" in caplog.text
    for value in (s3.secret_access_key, s3.access_key_id, s3.url):
        assert value not in caplog.text
