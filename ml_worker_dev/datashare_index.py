"""Datashare's Elasticsearch index layout, for loading sample and benchmark corpora.

Datashare writes its indices itself; this module exists so that the demo, the
benchmarks and the tests load documents exactly as Datashare lays them out: one
index per project, documents and their named entities (join-field children, routed
to the root document) side by side, embedded documents routed to their root.
"""

from __future__ import annotations

from collections.abc import Iterable

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

MAPPING = {
    "properties": {
        "type": {"type": "keyword"},
        "join": {"type": "join", "relations": {"Document": "NamedEntity"}},
        "content": {"type": "text"},
        "language": {"type": "keyword"},
        "contentType": {"type": "keyword"},
        "contentLength": {"type": "long"},
        "path": {"type": "keyword"},
        "dirname": {"type": "keyword"},
        "title": {"type": "keyword"},
        "rootDocument": {"type": "keyword"},
        "parentDocument": {"type": "keyword"},
        "extractionLevel": {"type": "integer"},
        "tags": {"type": "keyword"},
        "mention": {"type": "keyword"},
        "category": {"type": "keyword"},
    }
}


async def create_project_index(es: AsyncElasticsearch, project: str) -> None:
    await es.indices.create(index=project, mappings=MAPPING)


def document_source(
    content: str | None,
    *,
    path: str,
    root_id: str | None = None,
    parent_id: str | None = None,
    language: str = "ENGLISH",
    content_type: str = "text/plain",
    title: str | None = None,
    tags: list[str] | None = None,
) -> dict:
    source = {
        "type": "Document",
        "join": {"name": "Document"},
        "path": path,
        "dirname": path.rsplit("/", 1)[0],
        "title": title or path.rsplit("/", 1)[-1],
        "language": language,
        "contentType": content_type,
        "extractionLevel": 0 if root_id is None else 1,
        "tags": tags or [],
    }
    if content is not None:
        source["content"] = content
        source["contentLength"] = len(content)
    if root_id is not None:
        source["rootDocument"] = root_id
        source["parentDocument"] = parent_id or root_id
    return source


def named_entity_source(mention: str, *, doc_id: str, category: str = "PERSON") -> dict:
    return {
        "type": "NamedEntity",
        "join": {"name": "NamedEntity", "parent": doc_id},
        "mention": mention,
        "category": category,
    }


async def bulk_index(
    es: AsyncElasticsearch, project: str, docs: Iterable[tuple[str, dict, str | None]]
) -> None:
    """Index ``(id, source, routing)`` triples, then make them searchable."""
    actions = (_action(project, *doc) for doc in docs)
    await async_bulk(es, actions)
    await es.indices.refresh(index=project)


def _action(project: str, doc_id: str, source: dict, routing: str | None) -> dict:
    action = {"_index": project, "_id": doc_id, "_source": source}
    if routing is not None:
        action["_routing"] = routing
    return action
