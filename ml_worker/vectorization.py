"""Documents to passage rows to the project's table: the work of one batch.

The task entry points (``ml_worker.tasks``) read the documents and hand them here;
the benchmarks and the tests write tables with the same functions. Blocking: the
model and LanceDB run in the caller's thread.
"""

from __future__ import annotations

import dataclasses
import logging

from lancedb.table import Table

from ml_worker import store
from ml_worker.chunking import (
    PASSAGE_OVERLAP_TOKENS,
    PASSAGE_TOKENS,
    Passage,
    split_passages,
)
from ml_worker.documents import Document
from ml_worker.embedding import ModelEmbedder
from ml_worker.fanout import BatchCounts

logger = logging.getLogger(__name__)


def write_documents(
    table: Table, docs: list[Document], *, max_chars: int, requested: int
) -> BatchCounts:
    """Embed the documents of ``docs`` that are new or changed and make their
    passages the table's; ``requested``: the batch's ids, found or not."""
    stored = store.stored_hashes(table, [d.id for d in docs])
    new = [d for d in docs if d.id not in stored]
    changed = [d for d in docs if d.id in stored and stored[d.id] != {d.content_hash}]
    write_passages(table, capped(new + changed, max_chars))
    return BatchCounts(
        documents=requested,
        new=len(new),
        changed=len(changed),
        unchanged=len(docs) - len(new) - len(changed),
        missing=requested - len(docs),
    )


def capped(docs: list[Document], max_chars: int) -> list[Document]:
    """``docs``, each cut to its first ``max_chars`` characters, with a warning."""
    kept = []
    for doc in docs:
        if len(doc.content) > max_chars:
            logger.warning(
                "document %s: only the first %s of its %s characters are vectorized",
                doc.id,
                max_chars,
                len(doc.content),
            )
            doc = dataclasses.replace(doc, content=doc.content[:max_chars])
        kept.append(doc)
    return kept


def write_passages(table: Table, docs: list[Document]) -> None:
    """Make the passages of ``docs``' current text their only rows in the table."""
    if not docs:
        return
    embedder = store.table_embedder(table)
    rows = [
        passage_row(doc, passage)
        for doc in docs
        for passage in passages_of(doc.content, embedder)
    ]
    store.replace_documents(table, [d.id for d in docs], rows)


def passages_of(content: str, embedder: ModelEmbedder) -> list[Passage]:
    """The passages a content is cut into for this model.

    A content without text still gets one empty passage: so recorded, it counts as
    vectorized and a re-run skips it, and no search ever finds it.
    """
    passages = split_passages(
        content,
        embedder.tokenizer,
        max_tokens=min(PASSAGE_TOKENS, embedder.max_tokens),
        overlap_tokens=PASSAGE_OVERLAP_TOKENS,
    )
    return passages or [Passage(store.NO_TEXT_PASSAGE, 0, 0, "")]


def passage_row(doc: Document, passage: Passage) -> dict:
    """The table row of one passage of ``doc`` (its vector left to the table)."""
    row = store.PassageRow(
        doc_id=doc.id,
        root_id=doc.root_id,
        passage=passage.index,
        start=passage.start,
        end=passage.end,
        content=passage.text,
        path=doc.path,
        title=doc.title,
        content_type=doc.content_type,
        language=doc.language,
        tags=doc.tags,
        content_hash=doc.content_hash,
    )
    return dataclasses.asdict(row)
