"""Hybrid document scoring settings, measured on several known-item sets at once.

Each set is indexed and vectorized once, as bench.quality does (its model chosen
from its languages, as the workers do); then every point of
a grid of ``ml_worker.search.scoring``'s document scoring settings (FIRST_PASSAGE_VECTOR_SHARE,
FIRST_PASSAGE_TEXT_SHARE, DOCUMENT_VECTOR_WEIGHT) ranks every set's queries through
the product's own search. Settings are chosen on all sets together: the point whose
lowest gain over the naive hybrid baseline (bench.quality's, computed here once per
set) is highest, not the best on one set.

    uv run python -m bench.scoring_grid --dataset DIR_OR_FILE [--dataset ...]
        [--limit N]

One line per point: its settings, each set's hybrid MRR@10, their mean and the
lowest gain. The last line is the best point: ``grid best vector_share=...
text_share=... weight=... min_gain=... mean_mrr10=...``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

from bench import quality
from ml_worker import search, store
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import AUTO_MODEL
from ml_worker.es_client import es_client
from ml_worker.search import scoring
from ml_worker_dev.local_stack import es_emulator

# Around the kept point (0.6, 0.2, 0.13; docs/retrieval.md).
VECTOR_SHARES = (0.5, 0.6, 0.7)
TEXT_SHARES = (0.1, 0.2, 0.3, 0.4)
# The vector side is standardized (a few units wide), the text side 0 to 1.
WEIGHTS = (0.11, 0.12, 0.13, 0.14, 0.16)


async def built_tables(es_url: str, datasets: list[Path], limit: int | None, tmp: str):
    """Each set's items, its vectorized table and its naive hybrid MRR@10 (the
    baseline of bench.quality)."""
    es = es_client(es_url)
    config = MLWorkerConfig(es_address=es_url, vector_db_uri=tmp)
    vector_db = store.connect(tmp)
    sets = {}
    try:
        for dataset in datasets:
            items = quality.load_dataset(dataset, limit)
            project = f"bench-grid-{uuid.uuid4().hex[:8]}"
            await quality.index_documents(es, project, items)
            plan = await quality.vectorize(es, vector_db, config, project, AUTO_MODEL)
            await es.indices.delete(index=project, ignore_unavailable=True)
            table = store.open_table(vector_db, project)
            table.optimize()
            naive = quality.naive_table(
                vector_db, items, plan.summary.model, config.embed_batch_size
            )
            ranks = quality.naive_ranks(naive, items, search.SearchMode.HYBRID)
            sets[dataset.stem] = (items, table, statistics.mean(ranks))
    finally:
        await es.close()
    return sets


def hybrid_mrr(items: list[dict], table, vectors) -> float:
    queries = [item["query"] for item in items]
    results = search.search_queries(
        table,
        queries,
        mode=search.SearchMode.HYBRID,
        n_similar=quality.K,
        vectors=vectors,
    )
    return statistics.mean(
        quality.reciprocal_rank([h["doc_id"] for h in hits], quality.doc_id(i["id"]))
        for i, hits in zip(items, results, strict=True)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, action="append", required=True)
    parser.add_argument("--limit", type=int, help="only the first N items of each set")
    args = parser.parse_args()
    datasets = quality.dataset_files(args.dataset)
    with ExitStack() as stack:
        es_url = stack.enter_context(es_emulator())
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        sets = asyncio.run(built_tables(es_url, datasets, args.limit, tmp))
        vectors = {
            name: store.table_embedder(table).compute_query_embeddings(
                [item["query"] for item in items]
            )
            for name, (items, table, _) in sets.items()
        }
        points = []
        for share, text_share, weight in itertools.product(
            VECTOR_SHARES, TEXT_SHARES, WEIGHTS
        ):
            scoring.FIRST_PASSAGE_VECTOR_SHARE = share
            scoring.FIRST_PASSAGE_TEXT_SHARE = text_share
            scoring.DOCUMENT_VECTOR_WEIGHT = weight
            mrr = {n: hybrid_mrr(i, t, vectors[n]) for n, (i, t, _) in sets.items()}
            gains = [mrr[n] - naive for n, (_, _, naive) in sets.items()]
            point = (
                min(gains),
                statistics.mean(mrr.values()),
                share,
                text_share,
                weight,
            )
            points.append(point)
            print(
                f"vector_share={share} text_share={text_share} weight={weight} "
                + " ".join(f"{n}={v:.3f}" for n, v in mrr.items())
                + f" mean={point[1]:.3f} min_gain={point[0]:+.3f}",
                flush=True,
            )
    gain, mean, share, text_share, weight = max(points)
    print(
        f"grid best vector_share={share} text_share={text_share} weight={weight}"
        f" min_gain={gain:+.3f} mean_mrr10={mean:.3f}"
    )


if __name__ == "__main__":
    main()
