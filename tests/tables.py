"""What a project's table must hold, checked passage by passage, and the rows
writers write to it without a model."""

from __future__ import annotations

import random

import numpy as np

from ml_worker import documents, store
from ml_worker.config import MLWorkerConfig
from ml_worker.documents import Document
from ml_worker.vectorization import passage_row, passages_of
from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus, filler


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


def document(doc_id: str, content: str) -> Document:
    """The document Elasticsearch would give for this content (hash included)."""
    return documents.document_from_hit({"_id": doc_id, "_source": {"content": content}})


def document_versions(seed: int, n_docs: int) -> list[Document]:
    """One version of ``n_docs`` documents: lengths from none to several passages."""
    rng = random.Random(seed)
    return [
        document(f"doc-{i:03d}", "" if i % 17 == 0 else filler(rng, rng.randint(1, 40)))
        for i in range(n_docs)
    ]


def stand_in_rows(table, docs: list[Document]) -> list[dict]:
    """The rows the product writes for these documents, with stand-in vectors:
    writers then need no model, and the test no time embedding."""
    embedder = store.table_embedder(table)
    rows = [
        passage_row(doc, passage)
        for doc in docs
        for passage in passages_of(doc.content, embedder)
    ]
    rng = np.random.default_rng(len(rows))
    vectors = rng.standard_normal((len(rows), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        {**row, store.VECTOR: v.tolist()} for row, v in zip(rows, vectors, strict=False)
    ]


def stand_in_batches(
    table, docs: list[Document], batch_docs: int
) -> list[tuple[list[str], list[dict]]]:
    """The documents' batches of ``batch_docs``: their ids and ``stand_in_rows``."""
    return [
        (
            [d.id for d in docs[i : i + batch_docs]],
            stand_in_rows(table, docs[i : i + batch_docs]),
        )
        for i in range(0, len(docs), batch_docs)
    ]


def assert_holds(table, docs: list[Document]) -> None:
    """Each document has exactly the passages of its version, each once."""
    table.checkout_latest()
    rows = (
        table.search()
        .select(["doc_id", "passage", "start", "end", "content_hash"])
        .limit(None)
        .to_list()
    )
    passages = [(r["doc_id"], r["passage"], r["start"], r["end"]) for r in rows]
    assert len(passages) == len(set(passages)), "duplicate passages"
    embedder = store.table_embedder(table)
    expected = {
        (d.id, p.index, p.start, p.end)
        for d in docs
        for p in passages_of(d.content, embedder)
    }
    assert set(passages) == expected
    hashes = store.stored_hashes(table, [d.id for d in docs])
    assert hashes == {d.id: {d.content_hash} for d in docs}
