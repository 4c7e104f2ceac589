"""Retrieval quality on a known-item set: MRR@10 and Recall@10 per search mode.

Each line of the dataset is ``{"id", "query", "content"}``: the query is answered by
exactly one document, the one with that content. A line may give the document's
``language`` as Datashare names it (default ENGLISH). The documents go through the same
path as a Datashare project's: indexed in Elasticsearch with Datashare's layout,
vectorized by the ``vectorize_docs`` task, searched with ``find_most_similar``.
Documents get neutral paths and titles, so only their content can match a query.

    uv run python -m bench.quality --dataset PATH [--es-url URL] [--limit N]
        [--model MODEL] [--compare-scoring]

``--dataset`` defaults to ``ML_WORKER_QUALITY_DATASET``; the set measured in
docs/retrieval.md is a known-item set built from Python's standard library
documentation (stdlib-known-item.jsonl), which this repository does not ship.

The last line printed is ``quality hybrid_mrr10=X vector_mrr10=Y text_mrr10=Z``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from ml_worker import documents, store, tasks
from ml_worker.clients import es_client
from ml_worker.config import DEFAULT_MODEL, MLWorkerConfig
from ml_worker.search import Scoring, SearchMode
from ml_worker_dev import datashare_index
from ml_worker_dev.local_stack import es_emulator

K = 10
VECTORIZE_BATCH = 64
QUERY_BATCH = 64


def load_dataset(path: Path, limit: int | None) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    return items[:limit] if limit else items


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
                language=item.get("language", "ENGLISH"),
            ),
            None,
        )
        for n, item in enumerate(items)
    )
    await datashare_index.bulk_index(es, project, docs)


async def vectorize(
    es, vector_db, config: MLWorkerConfig, project: str, model: str
) -> int:
    # As create_vectorization_tasks: the full-text analysis follows the languages.
    store.open_or_create_table(
        vector_db,
        project,
        model=model,
        embed_batch_size=config.embed_batch_size,
        languages=await documents.language_mix(es, project),
    )
    written = 0
    pages = documents.document_id_pages(es, project, page_size=VECTORIZE_BATCH)
    async for ids in pages:
        written += await tasks.vectorize_docs(
            ids,
            project,
            config=config,
            es_client=es,
            vector_db=vector_db,
        )
    return written


async def evaluate(
    vector_db, project: str, items: list[dict], mode: SearchMode, scoring: Scoring
) -> tuple[float, float]:
    """MRR@K and Recall@K over the known items."""
    reciprocal_ranks, found = 0.0, 0
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
        for item, hits in zip(batch, results, strict=False):
            ranked = [hit["doc_id"] for hit in hits]
            target = doc_id(item["id"])
            if target in ranked:
                reciprocal_ranks += 1 / (ranked.index(target) + 1)
                found += 1
    return reciprocal_ranks / len(items), found / len(items)


async def run(
    dataset: Path, es_url: str, limit: int | None, model: str, compare_scoring: bool
) -> dict[SearchMode, float]:
    items = load_dataset(dataset, limit)
    project = f"bench-quality-{uuid.uuid4().hex[:8]}"
    es = es_client(es_url)
    try:
        started = time.perf_counter()
        await index_documents(es, project, items)
        with tempfile.TemporaryDirectory() as tmp:
            config = MLWorkerConfig(es_address=es_url, vector_db_uri=tmp)
            vector_db = store.connect(tmp)
            written = await vectorize(es, vector_db, config, project, model)
            table = store.open_table(vector_db, project)
            # A table this small is below upkeep's thresholds: index every row, as
            # upkeep does for large ones, so that queries run at indexed speed.
            table.optimize()
            passages = table.count_rows()
            print(
                f"{written} documents, {passages} passages indexed and vectorized in"
                f" {time.perf_counter() - started:.1f}s"
            )
            mrr = {}
            runs = [(mode, Scoring.BEST_PASSAGE) for mode in SearchMode]
            if compare_scoring:
                runs.append((SearchMode.HYBRID, Scoring.WEIGHTED_SUM))
            for mode, scoring in runs:
                started = time.perf_counter()
                mrr10, recall = await evaluate(vector_db, project, items, mode, scoring)
                mrr.setdefault(mode, mrr10)
                print(
                    f"{mode.value:>6} {scoring.value:<13} MRR@{K}={mrr10:.3f}"
                    f" Recall@{K}={recall:.3f}"
                    f" ({time.perf_counter() - started:.1f}s for {len(items)} queries)"
                )
    finally:
        await es.indices.delete(index=project, ignore_unavailable=True)
        await es.close()
    return mrr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        type=Path,
        default=os.environ.get("ML_WORKER_QUALITY_DATASET"),
        help="JSONL known-item set, lines {id, query, content}"
        " (default: $ML_WORKER_QUALITY_DATASET)",
    )
    parser.add_argument(
        "--es-url", help="Elasticsearch to use (default: an emulator started here)"
    )
    parser.add_argument("--limit", type=int, help="only the first N items")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="embedding model: english, multilingual, a hub id or a local folder"
        f" (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--compare-scoring",
        action="store_true",
        help="also rank hybrid results by weighted_sum, the non-default scoring",
    )
    args = parser.parse_args()
    if args.dataset is None:
        parser.error("give a dataset: --dataset PATH or ML_WORKER_QUALITY_DATASET")
    if not args.dataset.is_file():
        parser.error(f"no dataset file at {args.dataset}")
    with ExitStack() as stack:
        es_url = args.es_url or stack.enter_context(es_emulator())
        mrr = asyncio.run(
            run(args.dataset, es_url, args.limit, args.model, args.compare_scoring)
        )
    print(
        f"quality hybrid_mrr10={mrr[SearchMode.HYBRID]:.3f}"
        f" vector_mrr10={mrr[SearchMode.VECTOR]:.3f}"
        f" text_mrr10={mrr[SearchMode.TEXT]:.3f}"
    )


if __name__ == "__main__":
    main()
