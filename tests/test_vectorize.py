"""vectorize_docs on Datashare-shaped documents: passages, metadata, empty documents."""

from __future__ import annotations

import pytest

from ml_worker import store, tasks
from ml_worker.constants import ENGLISH_MODEL
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
    named_entity_source,
)

LONG = " ".join(
    f"Paragraph {i}: the port authority approved the lease." for i in range(300)
)


@pytest.fixture
async def indexed(es, project, vector_db):
    items = [
        (
            "memo",
            document_source(
                "The senator signed the lease.",
                path="/leak/memo.pdf",
                content_type="application/pdf",
                language="FRENCH",
                title="Memo",
                tags=["urgent", "it's"],
            ),
            None,
        ),
        ("memo-ne-0", named_entity_source("senator", doc_id="memo"), "memo"),
        ("long", document_source(LONG, path="/leak/long.txt"), None),
        ("no-content", document_source(None, path="/leak/scan.tiff"), None),
        ("blank", document_source(" \n\t ", path="/leak/blank.txt"), None),
        ("mail", document_source("Please find it attached.", path="/leak/a.eml"), None),
        (
            "attachment",
            document_source(
                "Invoice 42.", path="/leak/a.eml/invoice.txt", root_id="mail"
            ),
            "mail",
        ),
    ]
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    store.open_or_create_table(
        vector_db, project, model=ENGLISH_MODEL, embed_batch_size=16
    )
    return ["memo", "long", "no-content", "blank", "mail", "attachment"]


def _rows(vector_db, project) -> dict[str, list[dict]]:
    rows = store.open_table(vector_db, project).search().limit(None).to_list()
    by_doc: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (r["doc_id"], r["passage"])):
        by_doc.setdefault(row["doc_id"], []).append(row)
    return by_doc


async def _vectorize(docs, project, config, es, vector_db) -> dict[str, int]:
    return await tasks.vectorize_docs(
        docs, project, config=config, es_client=es, vector_db=vector_db
    )


async def test_every_document_is_written_and_counted(
    indexed, project, config, es, vector_db
):
    counts = await _vectorize(["gone", *indexed], project, config, es, vector_db)

    assert counts == {
        "documents": len(indexed) + 1,
        "new": len(indexed),
        "changed": 0,
        "unchanged": 0,
        "missing": 1,
    }
    assert set(_rows(vector_db, project)) == set(indexed)


async def test_documents_without_text_are_recorded_as_such(
    indexed, project, config, es, vector_db
):
    await _vectorize(indexed, project, config, es, vector_db)
    rows = _rows(vector_db, project)

    for doc_id in ("no-content", "blank"):
        (row,) = rows[doc_id]
        assert (row["passage"], row["content"], row["start"], row["end"]) == (
            store.NO_TEXT_PASSAGE,
            "",
            0,
            0,
        )
    # Recorded: a second run finds nothing to embed again.
    counts = await _vectorize(indexed, project, config, es, vector_db)
    assert counts["unchanged"] == len(indexed)


async def test_long_documents_are_split_into_passages_with_offsets(
    indexed, project, config, es, vector_db
):
    await _vectorize(indexed, project, config, es, vector_db)
    passages = _rows(vector_db, project)["long"]

    assert len(passages) > 5
    assert [p["passage"] for p in passages] == list(range(len(passages)))
    for p in passages:
        assert LONG[p["start"] : p["end"]] == p["content"]
        assert len(p["vector"]) == 384
    assert passages[0]["start"] == 0
    assert passages[-1]["end"] == len(LONG)


async def test_rows_carry_the_documents_metadata(
    indexed, project, config, es, vector_db
):
    await _vectorize(indexed, project, config, es, vector_db)
    rows = _rows(vector_db, project)

    (memo,) = rows["memo"]
    assert memo["root_id"] == "memo"
    assert (memo["path"], memo["title"]) == ("/leak/memo.pdf", "Memo")
    assert (memo["content_type"], memo["language"]) == ("application/pdf", "FRENCH")
    assert memo["tags"] == ["urgent", "it's"]
    (attachment,) = rows["attachment"]
    assert (attachment["root_id"], attachment["title"]) == ("mail", "invoice.txt")


async def test_a_document_gaining_or_losing_its_text_changes_its_rows(
    indexed, es, project, config, vector_db
):
    await _vectorize(indexed, project, config, es, vector_db)
    await bulk_index(
        es,
        project,
        [
            (
                "blank",
                document_source("Now it has text.", path="/leak/blank.txt"),
                None,
            ),
            ("long", document_source("", path="/leak/long.txt"), None),
        ],
    )

    counts = await _vectorize(indexed, project, config, es, vector_db)
    assert (counts["changed"], counts["unchanged"]) == (2, len(indexed) - 2)
    rows = _rows(vector_db, project)
    passages = {d: [(r["passage"], r["content"]) for r in rows[d]] for d in rows}
    assert passages["blank"] == [(0, "Now it has text.")]
    assert passages["long"] == [(store.NO_TEXT_PASSAGE, "")]
