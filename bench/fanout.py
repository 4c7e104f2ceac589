"""Fan-out memory: create_vectorization_tasks over projects of growing size.

For each size, a synthetic Datashare index (documents with only the fields the
fan-out filters on, one named-entity child per 100 documents) in an
Elasticsearch-API server (``ML_WORKER_ES_ADDRESS``, or the in-memory emulator
started here), and the project's vector table as a re-run finds it: one row per
document, plus rows of 1 % more documents that are gone from the index (vectors
left out: the fan-out reads doc_ids only). Then ``create_vectorization_tasks`` runs
in a fresh process: its first step (``prepare_vectorization``: the count, the model,
the deletion of the gone documents' rows) and the fan-out loop
(``fanout.run_fan_out``) with batches that are done as soon as started, so that
what is measured is the fan-out itself. Reported for each run: the process's peak
RSS (VmHWM, its imports, connections and model included), its RSS before the
fan-out, the seconds the fan-out took and the batches it ran per second.

The default batch is 640 documents (3,125 batches at 2 M documents). Each page of ids is a search
over the whole index, which the emulator answers in time proportional to the index,
hence pages of 100,000 (``--page-size``; the bench index's ``max_result_window`` is
raised to match). The emulator holds 3.5 to 4 KiB of RSS a document and is capped at
``--es-memory-gib`` (9 by default, so that the bench stays under 12 GiB): it held
1,000,000 documents, and ran out at the first search over 2,000,000 (see
docs/performance.md); a real Elasticsearch holds them in far less.

    uv run python -m bench.fanout [--sizes 200000 1000000] [--batch-size 640]
        [--page-size 100000] [--es-memory-gib 9] [--before PATH]

With a real Elasticsearch, ``ML_WORKER_ES_ADDRESS=... uv run python -m bench.fanout
--sizes 200000 2000000`` takes the 2 M figure.

``--before PATH``: also run the fan-out of the checkout at PATH on the same data
(before this one's, as its table is left as it found it), to compare. The last line
printed is ``fanout docs=N rss_mib=X rss_ratio=Y tasks_s=Z`` for the largest size,
the ratio being to the peak RSS at the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyarrow as pa
from elasticsearch.helpers import async_bulk

from ml_worker import store
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.es_client import es_client
from ml_worker_dev.datashare_index import (
    MAPPING,
    document_source,
    named_entity_source,
)
from ml_worker_dev.local_stack import (
    es_emulator,
)

ROOT = Path(__file__).resolve().parent.parent
GONE_FRACTION = 100  # 1 stored document in 100 is gone from the index
ROWS_PER_ADD = 100_000
# Bulk requests of 2,000 documents: the emulator held 3.7 KiB of RSS a document
# after 100,000 of them, against 5.4 KiB with requests of 10,000.
BULK_DOCS = 2_000
# The fan-out asks for the ids of `type: Document` hits only, so its process never
# sees a document's other fields; left out, they spare the emulator 70 % of its
# memory a document (5.6 KiB of RSS against 12.9 KiB, at 100,000 documents).
DOCUMENT_FIELDS = {
    k: v for k, v in document_source(None, path="/").items() if k in ("type", "join")
}
MIB = 1024 * 1024


def doc_id(project: str, i: int) -> str:
    """64 hex digits, like Datashare's ids."""
    return hashlib.sha256(f"{project}/{i}".encode()).hexdigest()


async def index_project(es_url: str, project: str, n_docs: int, page_size: int) -> None:
    es = es_client(es_url, timeout_s=600)
    try:
        await es.indices.create(
            index=project,
            mappings=MAPPING,
            settings={
                "max_result_window": max(10_000, page_size),
                "refresh_interval": "-1",  # one refresh, once loaded
            },
        )
        await async_bulk(es, _actions(project, n_docs), chunk_size=BULK_DOCS)
        await es.indices.put_settings(index=project, body={"refresh_interval": "1s"})
        await es.indices.refresh(index=project)
    finally:
        await es.close()


async def delete_index(es_url: str, project: str) -> None:
    es = es_client(es_url, timeout_s=600)
    try:
        await es.indices.delete(index=project)
    finally:
        await es.close()


def _actions(project: str, n_docs: int):
    for i in range(n_docs):
        doc = doc_id(project, i)
        yield {"_index": project, "_id": doc, "_source": DOCUMENT_FIELDS}
        if i % 100 == 0:
            entity = named_entity_source(f"person {i}", doc_id=doc)
            yield {
                "_index": project,
                "_id": f"{doc}-ne",
                "_routing": doc,
                "_source": entity,
            }


def store_project(vectors: str, project: str, n_docs: int) -> None:
    """The table a re-run finds: every document's row, and rows of gone ones."""
    db = store.connect(vectors)
    table = store.open_or_create_table(
        db, project, model=ENGLISH_MODEL, embed_batch_size=64
    )
    gone = [doc_id(f"{project}-gone", i) for i in range(n_docs // GONE_FRACTION)]
    ids = [doc_id(project, i) for i in range(n_docs)] + gone
    for start in range(0, len(ids), ROWS_PER_ADD):
        rows = _rows(table.schema, ids[start : start + ROWS_PER_ADD])
        table.add(rows, on_bad_vectors="null")


def _rows(schema: pa.Schema, ids: list[str]) -> pa.Table:
    n = len(ids)
    ndims = schema.field(store.VECTOR).type.list_size
    # One vector given: LanceDB embeds a batch only when all its vectors are missing.
    vectors = [[0.0] * ndims] + [None] * (n - 1)
    columns = {
        store.DOC_ID: ids,
        store.PASSAGE: [0] * n,
        "start": [0] * n,
        "end": [0] * n,
        store.CONTENT: [""] * n,
        store.VECTOR: vectors,
        store.PASSAGE_ID: [store.passage_id(i, None, 0) for i in ids],
    }
    return pa.Table.from_pydict(
        {f.name: columns.get(f.name, [None] * n) for f in schema}, schema=schema
    )


def run_child(code: Path, args: dict) -> dict:
    """create_vectorization_tasks of the checkout at ``code``, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"fan-out process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class _InstantBatches:
    """Batches that are done as soon as started: what is measured is the fan-out
    itself (its id pages, its window, its memory), not a worker."""

    def __init__(self, es, project: str):
        self._es, self._project = es, project

    async def id_page(self, after: str | None, size: int) -> list[str]:
        from ml_worker import documents

        return await documents.document_id_page(
            self._es, self._project, page_size=size, after=after
        )

    async def run_batch(self, docs: list[str]):
        from ml_worker.fanout import BatchCounts

        return BatchCounts(documents=len(docs), unchanged=len(docs))

    async def progress(self, done: int, total: int) -> None:
        return None


async def child(args: dict) -> dict:
    from ml_worker.config import MLWorkerConfig
    from ml_worker.engines import engine_for
    from ml_worker.es_client import es_client_from
    from ml_worker.fanout import run_fan_out
    from ml_worker.tasks import prepare_vectorization

    config = MLWorkerConfig(
        es_address=args["es_url"],
        es_timeout_s=600,
        es_page_size=args["page_size"],
        vector_db_uri=args["vectors"],
    )
    es = es_client_from(config)
    vector_db = store.connect_from(config)
    try:
        rss_before = _status_kib("VmRSS") / 1024
        start = time.monotonic()
        state = await prepare_vectorization(
            args["project"],
            batch_size=args["batch_size"],
            config=config,
            es_client=es,
            vector_db=vector_db,
            engine=engine_for(config),
        )
        await run_fan_out(state, _InstantBatches(es, args["project"]))
        seconds = time.monotonic() - start
    finally:
        await es.close()
    return {
        "tasks": state.summary.batches,
        "seconds": seconds,
        "rss_before_mib": rss_before,
        "rss_mib": _status_kib("VmHWM") / 1024,
    }


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _line(label: str, n_docs: int, result: dict) -> str:
    return (
        f"fanout {label} docs={n_docs} tasks={result['tasks']}"
        f" seconds={result['seconds']:.1f}"
        f" tasks_s={result['tasks'] / result['seconds']:.0f}"
        f" rss_before_mib={result['rss_before_mib']:.0f}"
        f" rss_mib={result['rss_mib']:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--batch-size", type=int, default=640)
    parser.add_argument("--page-size", type=int, default=100_000)
    parser.add_argument(
        "--es-memory-gib",
        type=float,
        default=9.0,
        help="cap on the emulator's memory (address space)",
    )
    parser.add_argument("--before", type=Path, help="a checkout to compare with")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(json.loads(args.child)))))
        return
    print(f"batch size {args.batch_size}, page size {args.page_size}", flush=True)
    peaks = {}
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        es_url = os.environ.get("ML_WORKER_ES_ADDRESS") or stack.enter_context(
            es_emulator(memory_limit_bytes=int(args.es_memory_gib * 2**30))
        )
        vectors = str(workdir / "vectors")
        for n_docs in sorted(args.sizes):
            project = f"bench-fanout-{n_docs}-{os.getpid()}"
            start = time.monotonic()
            asyncio.run(index_project(es_url, project, n_docs, args.page_size))
            store_project(vectors, project, n_docs)
            print(
                f"docs={n_docs}: indexed and stored in {time.monotonic() - start:.0f}s",
                flush=True,
            )
            child_args = {
                "project": project,
                "es_url": es_url,
                "vectors": vectors,
                "batch_size": args.batch_size,
                "page_size": args.page_size,
            }
            if args.before is not None:
                before = run_child(args.before.resolve(), child_args)
                print(_line("before", n_docs, before), flush=True)
                # It deleted the gone documents' rows: this run finds them too.
                store.drop_table(store.connect(vectors), project)
                store_project(vectors, project, n_docs)
            result = run_child(ROOT, child_args)
            print(_line("now", n_docs, result), flush=True)
            peaks[n_docs] = result
            # The emulator then holds one project at a time.
            asyncio.run(delete_index(es_url, project))
    largest, smallest = max(peaks), min(peaks)
    result = peaks[largest]
    print(
        f"fanout docs={largest} rss_mib={result['rss_mib']:.0f}"
        f" rss_ratio={result['rss_mib'] / peaks[smallest]['rss_mib']:.3f}"
        f" tasks_s={result['tasks'] / result['seconds']:.0f}"
    )


if __name__ == "__main__":
    main()
