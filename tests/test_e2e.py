"""The whole pipeline on real services.

RabbitMQ and PostgreSQL are the machine's; the task service and the workers are
real processes started with their CLIs (the session's, ``session_workers``);
Elasticsearch is the server of the ``es_url`` fixture. Nothing runs in-process but
the test's own HTTP calls.
"""

from __future__ import annotations

import random

import pytest

from ml_worker import store
from ml_worker.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus, filler
from tests.stack import run_task, wait_done

pytestmark = pytest.mark.e2e

N_DOCS = 240
BATCH_SIZE = 8

VECTOR_ONLY = (
    "doc-0007",
    "A kitten dozed peacefully upon the woven mat by the fireplace.",
)
KEYWORD_ONLY = ("doc-0013", "The wire reference QZ7781XK was never explained.")
DEEP_IN_LONG = (
    "The whistleblower met the journalist at the lighthouse cafe at midnight."
)
LONG_DOC = "doc-0021"
IN_ATTACHMENT = (
    "doc-0004-attachment",
    "Minutes of the closed meeting on the volcano observatory budget.",
)


def _long_document() -> str:
    rng = random.Random(1)
    return " ".join([filler(rng, 150), DEEP_IN_LONG, filler(rng, 20)])


async def _seed(es, project: str) -> set[str]:
    special = dict([VECTOR_ONLY, KEYWORD_ONLY, IN_ATTACHMENT])
    special[LONG_DOC] = _long_document()
    special["doc-0030"] = _long_document().replace(DEEP_IN_LONG, "")
    items, doc_ids = datashare_corpus(N_DOCS, special=special)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


async def test_vectorize_and_search_a_project(session_workers, es, project):
    url, vectors = session_workers.url, session_workers.settings["vector_db_uri"]
    doc_ids = await _seed(es, project)

    async with ICIJTaskClient(url) as client:
        args = {"project": project, "batch_size": BATCH_SIZE}
        children = await run_task(client, "create_vectorization_tasks", args)
        assert len(children) == -(-N_DOCS // BATCH_SIZE)
        await wait_done(client, children)
        written = [await client.get_task_result(c) for c in children]
        assert sum(written) == N_DOCS

        table = store.open_table(store.connect(vectors), project)
        rows = table.to_arrow().select(["doc_id", "passage"]).to_pylist()
        assert {r["doc_id"] for r in rows} == doc_ids
        passages = [(r["doc_id"], r["passage"]) for r in rows]
        assert len(passages) == len(set(passages))
        assert sum(1 for doc_id, _ in passages if doc_id == LONG_DOC) > 5

        queries = [
            "cat sleeping on a rug",
            "QZ7781XK",
            "the whistleblower met a journalist at the lighthouse cafe",
            "volcano observatory budget meeting",
        ]
        args = {"project": project, "queries": queries, "n_similar": 5}
        results = await run_task(client, "find_most_similar", args)

    assert [hits[0]["doc_id"] for hits in results] == [
        VECTOR_ONLY[0],
        KEYWORD_ONLY[0],
        LONG_DOC,
        IN_ATTACHMENT[0],
    ]
    assert all(len(hits) == 5 for hits in results)
    assert results[2][0]["snippet"].count("whistleblower") == 1
