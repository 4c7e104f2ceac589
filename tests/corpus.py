"""Datashare-shaped test corpora: documents, embedded documents, named entities."""

from __future__ import annotations

import random

from ml_worker_dev.datashare_index import document_source, named_entity_source

_SUBJECTS = [
    "the shipping company",
    "the offshore trust",
    "the mining ministry",
    "the auditor",
    "the pharmaceutical lab",
    "the port authority",
    "the private bank",
    "the senator",
    "the logistics firm",
    "the oil trader",
    "the charity",
    "the football club",
]
_VERBS = [
    "transferred",
    "invoiced",
    "concealed",
    "approved",
    "audited",
    "rerouted",
    "declared",
    "registered",
    "disputed",
    "settled",
    "postponed",
    "signed",
]
_OBJECTS = [
    "a consultancy fee",
    "the quarterly accounts",
    "a cargo of copper",
    "the board minutes",
    "a loan guarantee",
    "the clinical results",
    "a land concession",
    "the customs declaration",
    "a donation",
    "the lease",
]
_PLACES = [
    "in Panama",
    "through Cyprus",
    "via Rotterdam",
    "in Lagos",
    "from Jersey",
    "to Singapore",
    "in Geneva",
    "via Dubai",
    "in Kinshasa",
    "to Hong Kong",
]


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
        f"{rng.choice(_OBJECTS)} {rng.choice(_PLACES)} in {rng.randint(1998, 2024)}."
    )


def filler(rng: random.Random, n_sentences: int) -> str:
    return " ".join(sentence(rng) for _ in range(n_sentences))


def datashare_corpus(
    n_docs: int, *, seed: int = 0, special: dict[str, str] | None = None
) -> tuple[list[tuple[str, dict, str | None]], set[str]]:
    """``(id, source, routing)`` items to index, and the ids of the documents.

    Every fifth document has an embedded attachment (routed to its root) and every
    document has named-entity children, which are not documents. ``special`` maps
    document ids to contents written for known-item queries.
    """
    rng = random.Random(seed)
    items: list[tuple[str, dict, str | None]] = []
    doc_ids: set[str] = set()
    special = dict(special or {})
    n_roots = n_docs - n_docs // 5
    for i in range(n_roots):
        doc_id = f"doc-{i:04d}"
        content = special.pop(doc_id, "") or filler(rng, rng.randint(3, 12))
        path = f"/leak/folder-{i % 7}/doc-{i:04d}.txt"
        items.append((doc_id, document_source(content, path=path), None))
        doc_ids.add(doc_id)
        for k, mention in enumerate(rng.sample(_SUBJECTS, 2)):
            ne = named_entity_source(mention, doc_id=doc_id, category="ORGANIZATION")
            items.append((f"{doc_id}-ne-{k}", ne, doc_id))
        if i % 4 == 0 and len(doc_ids) < n_docs:
            child_id = f"{doc_id}-attachment"
            content = special.pop(child_id, "") or filler(rng, rng.randint(2, 6))
            source = document_source(
                content,
                path=f"{path}/attachment.pdf",
                root_id=doc_id,
                content_type="application/pdf",
            )
            items.append((child_id, source, doc_id))
            doc_ids.add(child_id)
    if special:
        raise ValueError(f"special ids not in the corpus: {sorted(special)}")
    return items, doc_ids
