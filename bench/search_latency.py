"""Search latency and vector-index recall on a project table of N passages.

The table is a real project table (the product's schema and embedding function),
indexed by the product's own upkeep (``ml_worker.upkeep.ensure_indices``). Its rows
are synthetic, because embedding a million passages would take a day on a CPU:
vectors are clustered (topics of about 500 passages, cosine to their topic about
0.7), texts are words drawn from a Zipf-distributed vocabulary, so BM25 posting
lists have realistic lengths. Searches go through ``tasks.find_most_similar``
(hybrid, n_similar=10): query embedding by the model, vector and full-text search,
fusion, grouping by document. The model gets the threads a worker's ``torch_threads``
would give it (cores / 2 workers by default): a query embedded with more threads than
free cores waits on them.

Recall@10 compares the indexed vector search, as the product runs it (its settings,
and the passages it fetches for 10 documents), to an exact scan, for queries drawn
from the same topics as the rows. The vector search is also timed as a second round
of candidates asks it, excluding the documents found (``doc_id NOT IN``).

The built table is cached under ``.ml-worker/bench/`` (one per row count): the
first run at a million rows spends minutes building indices, later runs none.

    uv run python -m bench.search_latency [--quick] [--rows N] [--queries Q]
        [--model english|multilingual] [--analysis english|ngrams]

The last line printed is ``search rows=N model=M analysis=A p50_ms=X p99_ms=Y
recall10=Z``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pyarrow as pa
import torch

from ml_worker import store, tasks, upkeep
from ml_worker.search import nearest_passages, passages_limit

PROJECT = "bench-search"
CACHE_DIR = Path(".ml-worker/bench")
# Bump when the generated data changes, so stale cached tables are not reused.
DATA_VERSION = 4
NDIMS = 384
ROWS_PER_TOPIC = 500
TOPIC_NOISE = 1.0
VOCABULARY = 50_000
ZIPF_EXPONENT = 1.07
WORDS_PER_PASSAGE = (30, 90)
PASSAGES_PER_DOC = 4
CHUNK_ROWS = 100_000
SEED = 7


class Corpus:
    """Deterministic synthetic passages: the same N gives the same rows and queries."""

    def __init__(self, n_rows: int):
        rng = np.random.default_rng(SEED)
        self.n_rows = n_rows
        n_topics = max(1, n_rows // ROWS_PER_TOPIC)
        centers = rng.standard_normal((n_topics, NDIMS)).astype(np.float32)
        self.centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        self.words = np.array(
            [_pseudo_word(i) for i in range(VOCABULARY)], dtype=object
        )
        weights = 1.0 / np.arange(1, VOCABULARY + 1) ** ZIPF_EXPONENT
        self.cdf = np.cumsum(weights) / weights.sum()

    def vectors(self, rng: np.random.Generator, n: int) -> np.ndarray:
        topics = rng.integers(0, len(self.centers), n)
        noise = rng.standard_normal((n, NDIMS)).astype(np.float32) / np.sqrt(NDIMS)
        v = self.centers[topics] + TOPIC_NOISE * noise
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def texts(self, rng: np.random.Generator, n: int, lengths=WORDS_PER_PASSAGE):
        lo, hi = lengths
        ids = np.searchsorted(self.cdf, rng.random((n, hi)))
        n_words = rng.integers(lo, hi + 1, n)
        return [
            " ".join(self.words[row[:k]]) for row, k in zip(ids, n_words, strict=False)
        ]

    def chunk(self, first: int, n: int) -> dict:
        rng = np.random.default_rng([SEED, first])
        texts = self.texts(rng, n)
        rows = np.arange(first, first + n)
        lengths = np.array([len(t) for t in texts], dtype=np.int64)
        # A document's passages follow one another: each starts after the last.
        starts = np.zeros(n, dtype=np.int64)
        for k in range(1, n):
            if rows[k] % PASSAGES_PER_DOC:
                starts[k] = starts[k - 1] + lengths[k - 1] + 1
        doc_ids = [f"doc-{i // PASSAGES_PER_DOC:07d}" for i in rows]
        passages = (rows % PASSAGES_PER_DOC).astype(np.int32)
        return {
            store.DOC_ID: doc_ids,
            # The table's primary key, required since writes merge on it.
            store.PASSAGE_ID: [
                store.passage_id(d, None, int(p))
                for d, p in zip(doc_ids, passages, strict=True)
            ],
            "root_id": [f"doc-{i // PASSAGES_PER_DOC:07d}" for i in rows],
            store.PASSAGE: passages,
            "start": starts,
            "end": starts + lengths,
            store.CONTENT: texts,
            store.VECTOR: self.vectors(rng, n),
            "path": [f"/bench/doc-{i // PASSAGES_PER_DOC:07d}.txt" for i in rows],
            "language": ["ENGLISH"] * n,
        }

    def queries(self, n: int) -> tuple[list[str], np.ndarray]:
        # Queries are a few words, rarely the most frequent ones (stop words).
        rng = np.random.default_rng([SEED, 1 << 40])
        texts = [
            " ".join(w for w in t.split() if w not in set(self.words[:50])) or t
            for t in self.texts(rng, n, lengths=(3, 6))
        ]
        return texts, self.vectors(rng, n)


def _pseudo_word(i: int) -> str:
    syllables = [
        "ka",
        "lo",
        "mi",
        "ren",
        "tu",
        "sa",
        "vo",
        "de",
        "pri",
        "nul",
        "ga",
        "shi",
    ]
    word = []
    i += 1
    while i:
        i, r = divmod(i, len(syllables))
        word.append(syllables[r])
    return "".join(word)


def _arrow_chunk(schema: pa.Schema, columns: dict) -> pa.Table:
    """The chunk with the table's schema; fields the benchmark does not fill are null."""
    n = len(columns[store.DOC_ID])
    arrays = []
    for field in schema:
        if field.name == store.VECTOR:
            flat = pa.array(columns[field.name].reshape(-1), type=pa.float32())
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, NDIMS))
        elif field.name in columns:
            arrays.append(pa.array(columns[field.name], type=field.type))
        else:
            arrays.append(pa.nulls(n, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


# The full-text analyses a project can get (text_analysis.analysis_for), by the
# language mix that gives each.
ANALYSES = {"english": {"ENGLISH": 1}, "ngrams": {"FRENCH": 1, "GERMAN": 1}}


@dataclass(frozen=True)
class Setup:
    rows: int
    model: str = "english"
    analysis: str = "english"

    def table_dir(self) -> Path:
        variant = (
            ""
            if (self.model, self.analysis) == ("english", "english")
            else (f"-{self.model}-{self.analysis}")
        )
        return CACHE_DIR / f"search-v{DATA_VERSION}-{self.rows}{variant}"


def build_table(setup: Setup) -> None:
    """Write and index the table (in a child process: its memory is not the search's)."""
    path = setup.table_dir()
    n_rows = setup.rows
    shutil.rmtree(path, ignore_errors=True)
    db = store.connect(str(path / "vectors"))
    table = store.open_or_create_table(
        db,
        PROJECT,
        model=setup.model,
        embed_batch_size=64,
        languages=ANALYSES[setup.analysis],
    )
    corpus = Corpus(n_rows)
    started = time.monotonic()
    for first in range(0, n_rows, CHUNK_ROWS):
        n = min(CHUNK_ROWS, n_rows - first)
        table.add(_arrow_chunk(table.schema, corpus.chunk(first, n)))
        print(f"  {first + n} rows written", flush=True)
    timings = {"write_s": round(time.monotonic() - started, 1)}
    # The product's upkeep, called until it has nothing left to do.
    while True:
        started = time.monotonic()
        done = upkeep.ensure_indices(table)
        if done is None:
            break
        key = f"{done.replace(' ', '_')}_s"
        timings[key] = round(time.monotonic() - started, 1)
        print(f"  {done}: {timings[key]}s", flush=True)
    (path / "built.json").write_text(json.dumps({"rows": n_rows, **timings}))


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


async def measure(setup: Setup, n_queries: int) -> dict:
    db = store.connect(str(setup.table_dir() / "vectors"))
    table = store.open_table(db, PROJECT)
    corpus = Corpus(setup.rows)
    texts, vectors = corpus.queries(n_queries)

    for text in texts[:5]:  # warm-up: model loading, index and file caches
        await tasks.find_most_similar(PROJECT, [text], n_similar=10, vector_db=db)
    latencies = []
    for text in texts:
        started = time.perf_counter()
        hits = await tasks.find_most_similar(
            PROJECT, [text], n_similar=10, vector_db=db
        )
        latencies.append((time.perf_counter() - started) * 1000)
        assert len(hits[0]) == 10, f"only {len(hits[0])} documents for {text!r}"

    # A filtered search: the language filter is answered by its scalar index.
    filtered = []
    for text in texts[:50]:
        started = time.perf_counter()
        await tasks.find_most_similar(
            PROJECT, [text], n_similar=10, languages=["ENGLISH"], vector_db=db
        )
        filtered.append((time.perf_counter() - started) * 1000)

    recalls, ann_latencies, excluding = [], [], []
    for vector in vectors:
        started = time.perf_counter()
        nearest = nearest_passages(table, vector, passages_limit(10))
        ann_latencies.append((time.perf_counter() - started) * 1000)
        ann = set(sorted(nearest, key=nearest.__getitem__, reverse=True)[:10])
        exact = _exact_row_ids(table, vector)
        recalls.append(len(ann & exact) / len(exact))
        # The vector search of a second round, as a search asks it when a few
        # documents took every place: without the (at most 9) documents found.
        condition = _excluding(table, sorted(ann)[:9])
        started = time.perf_counter()
        nearest_passages(table, vector, passages_limit(10), condition)
        excluding.append((time.perf_counter() - started) * 1000)
    return {
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "vector_p50_ms": _percentile(ann_latencies, 50),
        "excluding_p50_ms": _percentile(excluding, 50),
        "filtered_p50_ms": _percentile(filtered, 50),
        "recall10": float(np.mean(recalls)),
        "indices": {i.name: i.index_type for i in table.list_indices()},
    }


def _excluding(table, row_ids: list[int]) -> str:
    """The condition leaving out the documents of these rows."""
    rows = table.take_row_ids(row_ids).select([store.DOC_ID]).to_arrow()
    doc_ids = sorted(set(rows[store.DOC_ID].to_pylist()))
    return f"{store.DOC_ID} NOT IN ({', '.join(map(store.sql_string, doc_ids))})"


def _exact_row_ids(table, vector) -> set[int]:
    """The 10 nearest rows by cosine, from a scan of every vector."""
    exact = table.search(vector, query_type="vector").distance_type("cosine")
    exact = exact.bypass_vector_index().with_row_id(True).select(["_distance"])
    return set(exact.limit(10).to_arrow()["_rowid"].to_pylist())


def main() -> None:
    # Stopped by a signal, still stop what it started (services, worker processes).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--rows", type=int, help="passages in the table (1,000,000)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuild", action="store_true", help="ignore a cached table")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 2),
        help="the model's threads, as a worker's torch_threads (cores / 2 workers)",
    )
    parser.add_argument(
        "--model",
        choices=["english", "multilingual"],
        default="english",
        help="the table's model, which embeds the queries (the rows' vectors are"
        " synthetic, of the 384 dimensions both have)",
    )
    parser.add_argument(
        "--analysis",
        choices=list(ANALYSES),
        default="english",
        help="the full-text index's: English stemming, or the n-grams of a project"
        " in several languages",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    n_rows = args.rows or (100_000 if args.quick else 1_000_000)
    setup = Setup(n_rows, args.model, args.analysis)

    built = setup.table_dir() / "built.json"
    if args.rebuild or not built.exists():
        print(
            f"building a table of {n_rows} passages in {setup.table_dir()}", flush=True
        )
        # spawn: a process that has used LanceDB must never be forked.
        child = multiprocessing.get_context("spawn").Process(
            target=build_table, args=(setup,)
        )
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"building the table failed (exit code {child.exitcode})")
    print(f"table: {built.read_text()}")

    started = time.monotonic()
    result = asyncio.run(measure(setup, args.queries))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"indices: {result['indices']}; vector search alone: p50"
        f" {result['vector_p50_ms']:.1f} ms, excluding 9 documents (a second round):"
        f" p50 {result['excluding_p50_ms']:.1f} ms; filtered by language: p50"
        f" {result['filtered_p50_ms']:.1f} ms; search process peak RSS {peak_mib:.0f} MiB;"
        f" measured in {time.monotonic() - started:.0f}s on {os.cpu_count()} CPUs"
    )
    print(
        f"search rows={n_rows} model={setup.model} analysis={setup.analysis}"
        f" p50_ms={result['p50_ms']:.1f}"
        f" p99_ms={result['p99_ms']:.1f} recall10={result['recall10']:.3f}"
    )


if __name__ == "__main__":
    main()
