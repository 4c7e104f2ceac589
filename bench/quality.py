"""Retrieval quality on known-item sets: MRR@10 and Recall@10 per search mode, for
the product and for the naive whole-document approach, in the same run.

Each line of a set is ``{"id", "query", "content"}``, optionally ``"language"`` (as
Datashare stores it, "ENGLISH" by default) and ``"kind"`` (any label: figures are also
given per kind, e.g. "cross-lingual" and "monolingual"). The query is answered by
exactly one document, the one with that content. The documents go through the same
path as a Datashare project's: indexed in Elasticsearch with Datashare's layout,
vectorized by the ``vectorize_docs`` task, searched with ``find_most_similar``.
Documents get neutral paths and titles, so only their content can match a query.

The naive baseline is a separate LanceDB table built directly with lancedb: each
whole document one row and ONE vector (the model reads its first tokens and truncates
the rest), BM25 over the whole document, LanceDB's hybrid query with its
reciprocal rank fusion (RRFReranker).

    uv run python -m bench.quality --dataset PATH [--dataset PATH...] [--es-url URL]
        [--limit N] [--model MODEL] [--compare-scoring]

``--dataset`` is a JSON-lines file or a folder of them (every ``*.jsonl`` in it), and
may be repeated; it defaults to ``ML_WORKER_QUALITY_DATASET``. bench/datasets builds
sets from Debian packages (docs/retrieval.md).

Per set, a line ``quality set=NAME hybrid=X vector=Y text=Z naive_hybrid=...
naive_vector=... naive_text=...`` (MRR@10; one more per kind, with ``kind=``). The
last line sums up every set: ``quality sets=N hybrid_mean=... naive_hybrid_mean=...
min_gain=... beats_modes=M/N``, where ``min_gain`` is the lowest hybrid minus naive
hybrid over the sets and ``beats_modes`` counts the sets whose hybrid is above both
of the product's single modes.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from lancedb.embeddings import EmbeddingFunctionConfig
from lancedb.index import FTS
from lancedb.query import LanceVectorQueryBuilder
from lancedb.rerankers import RRFReranker
from lancedb.table import Table

from ml_worker import documents, store, tasks
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import AUTO_MODEL
from ml_worker.embedding import embedder
from ml_worker.engines import engine_for
from ml_worker.es_client import es_client
from ml_worker.fanout import FanOutState
from ml_worker.search import Scoring, SearchMode
from ml_worker_dev import datashare_index
from ml_worker_dev.local_stack import es_emulator

K = 10
VECTORIZE_BATCH = 64
QUERY_BATCH = 64
DEFAULT_LANGUAGE = "ENGLISH"
PRODUCT, NAIVE = "product", "naive"


def load_dataset(path: Path, limit: int | None) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    return items[:limit] if limit else items


def dataset_files(paths: Iterable[Path]) -> list[Path]:
    """The sets to measure: files as given, folders as their ``*.jsonl``, sorted."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.jsonl")) if path.is_dir() else [path])
    return files


def queries_of(items: list[dict]) -> list[dict]:
    """The items that ask a query: the others are documents only, among which the
    queries' documents are searched (a ``null`` query)."""
    return [item for item in items if item.get("query")]


def doc_id(item_id: str) -> str:
    # Datashare's document ids are content hashes, not file names.
    return hashlib.sha256(item_id.encode()).hexdigest()


async def index_documents(es, project: str, items: list[dict]) -> None:
    await datashare_index.create_project_index(es, project)
    docs = (
        (
            doc_id(item["id"]),
            datashare_index.document_source(
                item["content"],
                path=f"/docs/{n:06d}.txt",
                language=item.get("language", DEFAULT_LANGUAGE),
            ),
            None,
        )
        for n, item in enumerate(items)
    )
    await datashare_index.bulk_index(es, project, docs)


async def vectorize(
    es, vector_db, config: MLWorkerConfig, project: str, model: str
) -> FanOutState:
    """Vectorizes the project as create_vectorization_tasks would, its batches
    run here one after another; returns its starting point, which names the
    model."""
    plan = await tasks.prepare_vectorization(
        project,
        model=model,
        config=config,
        es_client=es,
        vector_db=vector_db,
        engine=engine_for(config),
    )
    pages = documents.document_id_pages(es, project, page_size=VECTORIZE_BATCH)
    async for ids in pages:
        await tasks.vectorize_docs(
            ids,
            project,
            config=config,
            es_client=es,
            vector_db=vector_db,
        )
    return plan


def reciprocal_rank(ranked: list[str], target: str) -> float:
    return 1 / (ranked.index(target) + 1) if target in ranked[:K] else 0.0


async def product_ranks(
    vector_db, project: str, items: list[dict], mode: SearchMode, scoring: Scoring
) -> list[float]:
    """Each known item's reciprocal rank in the product's results (0: not in the
    first K)."""
    ranks = []
    for first in range(0, len(items), QUERY_BATCH):
        batch = items[first : first + QUERY_BATCH]
        results = await tasks.find_most_similar(
            project,
            [item["query"] for item in batch],
            n_similar=K,
            mode=mode,
            scoring=scoring,
            vector_db=vector_db,
        )
        for item, hits in zip(batch, results, strict=True):
            ranks.append(
                reciprocal_rank([h["doc_id"] for h in hits], doc_id(item["id"]))
            )
    return ranks


def naive_table(vector_db, items: list[dict], model: str, texts_per_call: int) -> Table:
    """Each whole document as one row: one vector, BM25 over all of its text."""
    function = embedder(model, texts_per_call)
    schema = pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("content", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), function.ndims())),
        ]
    )
    table = vector_db.create_table(
        f"naive-{uuid.uuid4().hex[:8]}",
        schema=schema,
        embedding_functions=[
            EmbeddingFunctionConfig(
                source_column="content", vector_column="vector", function=function
            )
        ],
    )
    # One row a document: a set may ask several queries of one (e.g. one per kind).
    contents = {doc_id(i["id"]): i["content"] for i in items}
    table.add([{"id": id_, "content": text} for id_, text in contents.items()])
    table.create_index("content", config=FTS())
    return table


def naive_ranks(table: Table, items: list[dict], mode: SearchMode) -> list[float]:
    """Each known item's reciprocal rank in the naive table's results."""
    queries = [item["query"] for item in items]
    vectors = store.table_embedder(table).compute_query_embeddings(queries)
    ranks = []
    for item, query, vector in zip(items, queries, vectors, strict=True):
        if mode is SearchMode.VECTOR:
            builder = table.search(vector, query_type="vector")
            assert isinstance(builder, LanceVectorQueryBuilder)
            builder = builder.distance_type("cosine")
        elif mode is SearchMode.TEXT:
            builder = table.search(query, query_type="fts")
        else:
            builder = (
                table.search(query_type="hybrid")
                .vector(vector)
                .text(query)
                .rerank(RRFReranker())
            )
        # The scores too: Lance warns, at every query, when a search names its
        # columns and leaves its own score out. A hybrid query's two searches
        # cannot both name theirs: it names none (K rows of whole documents).
        if mode is SearchMode.TEXT:
            builder = builder.select(["id", "_score"])
        elif mode is SearchMode.VECTOR:
            builder = builder.select(["id", "_distance"])
        rows = builder.limit(K).to_list()
        ranks.append(reciprocal_rank([r["id"] for r in rows], doc_id(item["id"])))
    return ranks


@dataclass(frozen=True)
class Run:
    system: str  # PRODUCT or NAIVE
    mode: SearchMode
    scoring: str
    ranks: list[float]
    seconds: float


def _by_kind(items: list[dict], ranks: list[float]) -> dict[str | None, list[float]]:
    """The ranks of every item (key None) and of each kind's items."""
    kinds: dict[str | None, list[float]] = {None: ranks}
    for item, rank in zip(items, ranks, strict=True):
        if "kind" in item:
            kinds.setdefault(item["kind"], []).append(rank)
    return kinds


async def measure_set(
    es, es_url: str, items: list[dict], name: str, model: str, compare_scoring: bool
) -> list[Run]:
    """The runs of every mode on one set, product and naive; prints their figures."""
    project = f"bench-quality-{uuid.uuid4().hex[:8]}"
    runs = []
    documents, items = items, queries_of(items)
    try:
        started = time.perf_counter()
        await index_documents(es, project, documents)
        with tempfile.TemporaryDirectory() as tmp:
            config = MLWorkerConfig(es_address=es_url, vector_db_uri=tmp)
            vector_db = store.connect(tmp)
            plan = await vectorize(es, vector_db, config, project, model)
            table = store.open_table(vector_db, project)
            # A table this small is below upkeep's thresholds: index every row, as
            # upkeep does for large ones, so that queries run at indexed speed.
            table.optimize()
            print(
                f"{name}: {plan.total} documents, {table.count_rows()} passages"
                f" indexed and vectorized in {time.perf_counter() - started:.1f}s;"
                f" model {plan.summary.model} ({plan.summary.model_choice})"
            )
            product = [(mode, Scoring.BEST_PASSAGE) for mode in SearchMode]
            if compare_scoring:
                product.append((SearchMode.HYBRID, Scoring.WEIGHTED_SUM))
            for mode, scoring in product:
                started = time.perf_counter()
                ranks = await product_ranks(vector_db, project, items, mode, scoring)
                seconds = time.perf_counter() - started
                runs.append(Run(PRODUCT, mode, scoring.value, ranks, seconds))
            started = time.perf_counter()
            naive = naive_table(
                vector_db, documents, plan.summary.model, config.embed_batch_size
            )
            print(
                f"{name}: naive table of {naive.count_rows()} whole documents"
                f" in {time.perf_counter() - started:.1f}s"
            )
            for mode in SearchMode:
                started = time.perf_counter()
                ranks = await asyncio.to_thread(naive_ranks, naive, items, mode)
                seconds = time.perf_counter() - started
                naive_scoring = "rrf" if mode is SearchMode.HYBRID else "whole_document"
                runs.append(Run(NAIVE, mode, naive_scoring, ranks, seconds))
    finally:
        await es.indices.delete(index=project, ignore_unavailable=True)
    for run in runs:
        for kind, ranks in _by_kind(items, run.ranks).items():
            print(
                f"  {run.system:<7} {run.mode.value:>6} {run.scoring:<14}"
                f" {f'kind={kind} ' if kind else ''}MRR@{K}={statistics.mean(ranks):.3f}"
                f" Recall@{K}={sum(r > 0 for r in ranks) / len(ranks):.3f}"
                + (
                    f" ({run.seconds:.1f}s for {len(items)} queries)"
                    if not kind
                    else ""
                )
            )
    return runs


def summary(name: str, items: list[dict], runs: list[Run]) -> list[str]:
    """The set's ``quality set=...`` lines: all its items, then each kind's."""
    figures: dict[str | None, dict[str, float]] = {}
    for run in runs:
        if run.scoring not in (Scoring.BEST_PASSAGE.value, "rrf", "whole_document"):
            continue
        label = run.mode.value if run.system == PRODUCT else f"naive_{run.mode.value}"
        for kind, ranks in _by_kind(items, run.ranks).items():
            figures.setdefault(kind, {})[label] = statistics.mean(ranks)
    return [
        f"quality set={name}{f' kind={kind}' if kind else ''} "
        + " ".join(f"{label}={value:.3f}" for label, value in values.items())
        for kind, values in figures.items()
    ]


def overall(summaries: dict[str, dict[str, float]]) -> str:
    """The last line: means over the sets, the lowest gain over naive hybrid, and
    how many sets' hybrid beats both single modes."""
    gains = {n: f["hybrid"] - f["naive_hybrid"] for n, f in summaries.items()}
    worst = min(gains, key=gains.__getitem__)
    beats = sum(f["hybrid"] > max(f["vector"], f["text"]) for f in summaries.values())
    means = " ".join(
        f"{label}_mean={statistics.mean(f[label] for f in summaries.values()):.3f}"
        for label in ("hybrid", "naive_hybrid", "vector", "text")
    )
    return (
        f"quality sets={len(summaries)} {means} min_gain={gains[worst]:+.3f}"
        f" ({worst}) beats_modes={beats}/{len(summaries)}"
    )


async def run(
    datasets: list[Path], es_url: str, limit: int | None, model: str, compare: bool
) -> list[str]:
    """Measures every set; returns the summary lines, the last one overall."""
    es = es_client(es_url)
    lines, figures = [], {}
    try:
        for dataset in datasets:
            items = load_dataset(dataset, limit)
            runs = await measure_set(es, es_url, items, dataset.stem, model, compare)
            lines.extend(summary(dataset.stem, queries_of(items), runs))
            figures[dataset.stem] = {
                (r.mode.value if r.system == PRODUCT else f"naive_{r.mode.value}"): (
                    statistics.mean(r.ranks)
                )
                for r in runs
                if r.scoring != Scoring.WEIGHTED_SUM.value
            }
    finally:
        await es.close()
    return [*lines, overall(figures)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        action="append",
        help="JSONL known-item set, lines {id, query, content[, language, kind]} (a"
        " null query: a document only), or a folder of them; repeatable (default:"
        " $ML_WORKER_QUALITY_DATASET)",
    )
    parser.add_argument(
        "--es-url", help="Elasticsearch to use (default: an emulator started here)"
    )
    parser.add_argument("--limit", type=int, help="only the first N items of each set")
    parser.add_argument(
        "--model",
        default=AUTO_MODEL,
        help="embedding model: english, multilingual, a hub id, a local folder, or"
        " auto, which chooses from each set's languages as the workers do (default)",
    )
    parser.add_argument(
        "--compare-scoring",
        action="store_true",
        help="also rank hybrid results by weighted_sum, the non-default scoring",
    )
    args = parser.parse_args()
    given = args.dataset or (
        [Path(os.environ["ML_WORKER_QUALITY_DATASET"])]
        if os.environ.get("ML_WORKER_QUALITY_DATASET")
        else []
    )
    if not given:
        parser.error("give a dataset: --dataset PATH or ML_WORKER_QUALITY_DATASET")
    for path in given:
        if not path.exists():
            parser.error(f"no dataset file at {path}")
    datasets = dataset_files(given)
    if not datasets:
        parser.error(f"no *.jsonl set in {', '.join(map(str, given))}")
    with ExitStack() as stack:
        es_url = args.es_url or stack.enter_context(es_emulator())
        lines = asyncio.run(
            run(datasets, es_url, args.limit, args.model, args.compare_scoring)
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
