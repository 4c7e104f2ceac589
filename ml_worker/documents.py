"""Reading a Datashare project's documents from its Elasticsearch index.

The index (named after the project) also holds the documents' named entities as
join-field children; only ``type: Document`` hits are documents. Embedded documents
are routed to their root document, so they are fetched with an ``ids`` query (which
needs no routing), not with ``mget``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from elasticsearch import AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_scan

_DOCUMENTS_ONLY = {"bool": {"filter": [{"term": {"type": "Document"}}]}}
_SOURCE_FIELDS = [
    "content",
    "rootDocument",
    "path",
    "title",
    "contentType",
    "language",
    "tags",
]


class UnknownProject(LookupError):
    pass


@dataclass(frozen=True)
class Document:
    id: str
    content: str
    root_id: str | None = None
    path: str | None = None
    title: str | None = None
    content_type: str | None = None
    language: str | None = None
    tags: list[str] = field(default_factory=list)


def es_client(address: str, *, username=None, password=None, timeout_s=30.0):
    auth = (username, password) if username else None
    client = AsyncElasticsearch(address, http_auth=auth, timeout=timeout_s)
    # The 7.17 client refuses servers without Elasticsearch's product header;
    # ES-API-compatible servers (OpenSearch, test emulators) do not send it.
    client.transport._verified_elasticsearch = True  # pylint: disable=protected-access
    return client


async def iter_document_ids(
    es: AsyncElasticsearch, project: str, *, page_size: int
) -> AsyncIterator[str]:
    """Every document id of the project, without reading the documents' sources."""
    await _check_index_exists(es, project)
    hits = async_scan(
        es,
        index=project,
        query={"query": _DOCUMENTS_ONLY},
        _source=False,
        size=page_size,
    )
    async for hit in hits:
        yield hit["_id"]


async def fetch_documents(
    es: AsyncElasticsearch, project: str, ids: list[str]
) -> list[Document]:
    """The documents with these ids (unknown ids are left out), in ``ids`` order."""
    await _check_index_exists(es, project)
    query = {"bool": {"filter": [{"ids": {"values": ids}}, {"term": {"type": "Document"}}]}}
    res = await es.search(
        index=project, query=query, size=len(ids), _source_includes=_SOURCE_FIELDS
    )
    by_id = {hit["_id"]: _to_document(hit) for hit in res["hits"]["hits"]}
    return [by_id[i] for i in ids if i in by_id]


async def _check_index_exists(es: AsyncElasticsearch, project: str):
    try:
        exists = await es.indices.exists(index=project)
    except NotFoundError:
        exists = False
    if not exists:
        msg = f'project "{project}" has no Elasticsearch index at {_address(es)}'
        raise UnknownProject(msg)


def _address(es: AsyncElasticsearch) -> str:
    hosts = es.transport.hosts or [{}]
    host = hosts[0]
    return f"{host.get('scheme', 'http')}://{host.get('host')}:{host.get('port')}"


def _to_document(hit: dict) -> Document:
    source = hit.get("_source", {})
    tags = source.get("tags") or []
    return Document(
        id=hit["_id"],
        content=source.get("content") or "",
        root_id=source.get("rootDocument") or hit["_id"],
        path=source.get("path"),
        title=source.get("title"),
        content_type=source.get("contentType"),
        language=source.get("language"),
        tags=[tags] if isinstance(tags, str) else list(tags),
    )


async def count_documents(es: AsyncElasticsearch, project: str) -> int:
    await _check_index_exists(es, project)
    res = await es.count(index=project, body={"query": _DOCUMENTS_ONLY})
    return res["count"]
