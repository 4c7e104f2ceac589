"""What a project's table must hold, checked passage by passage."""

from __future__ import annotations

from ml_worker import store
from ml_worker.config import MLWorkerConfig
from ml_worker.tasks import passages_of
from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus


async def seed(es, project, n_docs, *, seed=0, special=None) -> set[str]:
    """A Datashare-shaped index of ``n_docs`` documents; their ids."""
    items, doc_ids = datashare_corpus(n_docs, seed=seed, special=special)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


def expected_passages(table, contents: dict[str, str]) -> set[tuple]:
    """(doc_id, passage, start, end) of every passage these contents must give."""
    embedder = store.table_embedder(table)
    max_chars = MLWorkerConfig().max_content_chars
    return {
        (doc_id, p.index, p.start, p.end)
        for doc_id, content in contents.items()
        for p in passages_of(content[:max_chars], embedder)
    }


def table_passages(table) -> list[tuple]:
    rows = table.search().select(["doc_id", "passage", "start", "end"]).limit(None)
    return [(r["doc_id"], r["passage"], r["start"], r["end"]) for r in rows.to_list()]


async def indexed_contents(es, project) -> dict[str, str]:
    res = await es.search(
        index=project,
        query={"term": {"type": "Document"}},
        size=10000,
        _source_includes=["content"],
    )
    return {h["_id"]: h["_source"].get("content") or "" for h in res["hits"]["hits"]}


async def assert_table_exact(table, es, project) -> None:
    """Every indexed document has exactly its passages, once, and nothing else."""
    passages = table_passages(table)
    assert len(passages) == len(set(passages)), "duplicate passages"
    assert set(passages) == expected_passages(
        table, await indexed_contents(es, project)
    )
