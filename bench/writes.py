"""Passages written per second into one project table by N concurrent writers.

N writer processes (spawned, as icij-worker's are) write batches of documents into
one table through the product's write path (``store.replace_documents``: a
merge-insert on the passage key, then a delete of earlier versions' passages), on a
local directory and on an S3 API (moto's in-memory server, started here). The
passages come with precomputed vectors (random unit vectors of the model's 384
dimensions): no model runs while the writes are timed, so the figures are the
store's alone. The reference is one process adding the same batches with a plain
``table.add`` (one commit a batch, no key, no delete): the ratio is what the
concurrent, exact write path gets of it.

Each writer process starts once (importing the model's libraries takes seconds)
and writes to both stores; only the writes are timed, from the moment every writer
is ready.

    uv run python -m bench.writes [--writers N] [--docs D]

The last line printed is ``writes writers=N local_passages_s=X s3_passages_s=Y
local_ratio=A s3_ratio=B``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import boto3
import numpy as np
import pyarrow as pa

from ml_worker import store
from ml_worker.constants import ENGLISH_MODEL
from ml_worker_dev.local_stack import s3_emulator

NDIMS = 384
PASSAGES_PER_DOC = 4
BATCH_DOCS = 64  # the product's default vectorize_batch_size
WORDS = [
    "the",
    "port",
    "authority",
    "approved",
    "a",
    "lease",
    "through",
    "an",
    "offshore",
    "trust",
    "in",
]
SEED = 7
PROJECT = "bench-writes"
SPAWN = multiprocessing.get_context("spawn")


def batch_rows(batch: int) -> tuple[list[str], list[dict]]:
    """The documents of batch number ``batch`` and their passages' rows."""
    rng = np.random.default_rng([SEED, batch])
    n = BATCH_DOCS * PASSAGES_PER_DOC
    vectors = rng.standard_normal((n, NDIMS)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    words = rng.integers(0, len(WORDS), (n, 60))
    doc_ids = [f"doc-{batch * BATCH_DOCS + d:07d}" for d in range(BATCH_DOCS)]
    rows = []
    for k in range(n):
        doc_id, passage = doc_ids[k // PASSAGES_PER_DOC], k % PASSAGES_PER_DOC
        content = " ".join(WORDS[w] for w in words[k])
        rows.append(
            {
                store.DOC_ID: doc_id,
                "root_id": doc_id,
                store.PASSAGE: passage,
                "start": passage * 400,
                "end": passage * 400 + len(content),
                store.CONTENT: content,
                store.VECTOR: vectors[k],
                "path": f"/bench/{doc_id}.txt",
                "language": "ENGLISH",
                "tags": [],
                store.CONTENT_HASH: f"{batch:08x}{k // PASSAGES_PER_DOC:08x}",
            }
        )
    return doc_ids, rows


def _writer(stores: list[tuple[str, dict]], batches: list[int], sync) -> None:
    """Writes its batches to each store, when every writer is ready for it."""
    prepared = [batch_rows(b) for b in batches]
    for uri, options in stores:
        table = store.writable_table(
            store.connect(uri, storage_options=options), PROJECT
        )
        sync.wait()
        for doc_ids, rows in prepared:
            store.replace_documents(table, doc_ids, rows)
        sync.wait()


def _create_table(uri: str, options: dict, name: str):
    db = store.connect(uri, storage_options=options)
    return store.open_or_create_table(
        db, name, model=ENGLISH_MODEL, embed_batch_size=64
    )


def reference(uri: str, options: dict, n_batches: int) -> float:
    """Passages per second of one process adding the batches with ``table.add``."""
    table = _create_table(uri, options, f"{PROJECT}-reference")
    prepared = []
    for batch in range(n_batches):
        _, rows = batch_rows(batch)
        for r in rows:
            r[store.PASSAGE_ID] = store.passage_id(
                r[store.DOC_ID], r[store.CONTENT_HASH], r[store.PASSAGE]
            )
        prepared.append(pa.Table.from_pylist(rows, schema=table.schema))
    started = time.perf_counter()
    for rows in prepared:
        table.add(rows)
    elapsed = time.perf_counter() - started
    return sum(len(r) for r in prepared) / elapsed


def concurrent(
    stores: list[tuple[str, dict]], n_writers: int, n_batches: int
) -> list[float]:
    """Passages per second of ``n_writers`` processes writing to each store."""
    for uri, options in stores:
        _create_table(uri, options, PROJECT)
    sync = SPAWN.Barrier(n_writers + 1, timeout=600)
    writers = [
        SPAWN.Process(
            target=_writer, args=(stores, list(range(k, n_batches, n_writers)), sync)
        )
        for k in range(n_writers)
    ]
    for writer in writers:
        writer.start()
    rates = []
    try:
        for uri, options in stores:
            sync.wait()
            started = time.perf_counter()
            sync.wait()
            elapsed = time.perf_counter() - started
            rates.append(n_batches * BATCH_DOCS * PASSAGES_PER_DOC / elapsed)
            table = store.open_table(
                store.connect(uri, storage_options=options), PROJECT
            )
            rows = table.count_rows()
            expected = n_batches * BATCH_DOCS * PASSAGES_PER_DOC
            assert rows == expected, f"{uri}: {rows} rows, not {expected}"
    except BaseException:
        sync.abort()
        raise
    finally:
        for writer in writers:
            writer.join(timeout=60)
            if writer.exitcode is None:
                writer.kill()
    if any(w.exitcode != 0 for w in writers):
        raise SystemExit(f"a writer failed: exit codes {[w.exitcode for w in writers]}")
    return rates


def main() -> None:
    # Stopped by a signal, still stop what it started (the S3 server, the writers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument(
        "--docs",
        type=int,
        default=2048,
        help=f"documents, {PASSAGES_PER_DOC} passages each",
    )
    args = parser.parse_args()
    n_batches = max(1, args.docs // BATCH_DOCS)
    passages = n_batches * BATCH_DOCS * PASSAGES_PER_DOC

    with (
        tempfile.TemporaryDirectory(prefix="bench-writes-") as tmp,
        s3_emulator(Path(tmp)) as s3_url,
    ):
        bucket = "bench-writes"
        options = {
            "aws_endpoint": s3_url,
            "aws_region": "us-east-1",
            "aws_access_key_id": "bench",
            "aws_secret_access_key": "bench",
            "allow_http": "true",
        }
        boto3.client(
            "s3",
            endpoint_url=s3_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).create_bucket(Bucket=bucket)
        stores = [(str(Path(tmp) / "vectors"), {}), (f"s3://{bucket}/vectors", options)]
        print(
            f"{passages} passages ({n_batches} batches of {BATCH_DOCS} documents) by"
            f" {args.writers} writers, on {os.cpu_count()} CPUs",
            flush=True,
        )
        rates = concurrent(stores, args.writers, n_batches)
        references = [reference(uri, opts, n_batches) for uri, opts in stores]

    results = {}
    for name, rate, ref in zip(("local", "s3"), rates, references, strict=False):
        results[name] = (rate, rate / ref)
        print(
            f"{name}: {args.writers} writers {rate:.0f} passages/s; one process's"
            f" table.add {ref:.0f} passages/s; ratio {rate / ref:.2f}",
            flush=True,
        )
    print(
        f"writes writers={args.writers}"
        f" local_passages_s={results['local'][0]:.0f}"
        f" s3_passages_s={results['s3'][0]:.0f}"
        f" local_ratio={results['local'][1]:.2f} s3_ratio={results['s3'][1]:.2f}"
    )


if __name__ == "__main__":
    main()
