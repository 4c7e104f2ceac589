"""Reading a Datashare project's documents from its Elasticsearch index.

The index (named after the project) also holds the documents' named entities as
join-field children; only ``type: Document`` hits are documents. Embedded documents
are routed to their root document, so they are fetched with an ``ids`` query (which
needs no routing), not with ``mget``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from elasticsearch import (
    AsyncElasticsearch,
    ConnectionError,
    NotFoundError,
    TransportError,
)
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from ml_worker.exceptions import (
    ElasticsearchUnavailable,
    InvalidProjectIndex,
    UnknownProject,
)

_DOCUMENTS_ONLY = {"bool": {"filter": [{"term": {"type": "Document"}}]}}
# Answers cut down to their hits' ids: no index name, score or sort values to parse.
_HIT_IDS = "hits.hits._id"
# More than the languages Datashare detects.
_MAX_LANGUAGES = 100
_SOURCE_FIELDS = [
    "content",
    "rootDocument",
    "path",
    "title",
    "contentType",
    "language",
    "tags",
]


logger = logging.getLogger(__name__)

DEFAULT_RETRY_S = 60.0
_TRANSIENT_STATUSES = {429, 502, 503, 504}


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
    # Of the whole content as indexed, so that a re-run can tell what changed.
    content_hash: str = ""


# The fields documents are told and counted by, keyword fields in Datashare's
# mapping. In an index made without it, Elasticsearch's dynamic mapping makes them
# text: `type: Document` then matches nothing, and counting the languages fails on
# text fields' fielddata.
_KEYWORD_FIELDS = ("type", "language")


async def check_mapping(
    es: AsyncElasticsearch, project: str, *, retry_s: float = DEFAULT_RETRY_S
) -> None:
    """Raise InvalidProjectIndex unless the project's index maps the fields the
    workers read documents by as Datashare does."""
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.indices.get_mapping(index=project)
    (index,) = res.values()
    properties = index.get("mappings", {}).get("properties", {})
    wrong = {
        name: properties.get(name, {}).get("type", "missing")
        for name in _KEYWORD_FIELDS
        if properties.get(name, {}).get("type") != "keyword"
    }
    if wrong:
        found = ", ".join(f"{name} is {kind}" for name, kind in wrong.items())
        msg = (
            f'project "{project}": its index lacks Datashare\'s mapping ({found},'
            f" where Datashare maps keyword): index its documents with Datashare,"
            f" or create the index with Datashare's mapping before adding them"
        )
        raise InvalidProjectIndex(msg)


async def count_documents(
    es: AsyncElasticsearch, project: str, *, retry_s: float = DEFAULT_RETRY_S
) -> int:
    """How many documents the project's index holds, its named entities left out."""
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.count(index=project, body={"query": _DOCUMENTS_ONLY})
    return res["count"]


async def language_mix(
    es: AsyncElasticsearch, project: str, *, retry_s: float = DEFAULT_RETRY_S
) -> dict[str, int]:
    """The project's document counts by language, as Datashare detected it."""
    aggregation = {"terms": {"field": "language", "size": _MAX_LANGUAGES}}
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.search(
                index=project, query=_DOCUMENTS_ONLY, size=0, aggs={"l": aggregation}
            )
    return {b["key"]: b["doc_count"] for b in res["aggregations"]["l"]["buckets"]}


async def document_id_pages(
    es: AsyncElasticsearch,
    project: str,
    *,
    page_size: int,
    retry_s: float = DEFAULT_RETRY_S,
) -> AsyncIterator[list[str]]:
    """Every document id of the project, a page at a time, in id order.

    Each page is asked for by the last id read (``search_after`` on ``_id``), so a
    page that meets an outage is asked again as it was and the listing resumes where
    it stopped; a scroll cannot, as a page whose answer was lost is gone from its
    context. Nothing is held for the whole listing, here or on the server.
    """
    after = None
    while True:
        page = await document_id_page(
            es, project, page_size=page_size, after=after, retry_s=retry_s
        )
        if page:
            yield page
        if len(page) < page_size:
            return
        after = page[-1]


async def document_id_page(
    es: AsyncElasticsearch,
    project: str,
    *,
    page_size: int,
    after: str | None,
    retry_s: float = DEFAULT_RETRY_S,
) -> list[str]:
    """The ``page_size`` document ids following ``after`` (from the first if None),
    in id order: ``after`` is a cursor a caller may keep between calls."""
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.search(
                index=project,
                query=_DOCUMENTS_ONLY,
                sort=[{"_id": "asc"}],  # type: ignore[list-item]
                size=page_size,
                _source=False,
                track_total_hits=False,
                filter_path=_HIT_IDS,
                search_after=None if after is None else [after],
            )
    return _hit_ids(res)


async def indexed_document_ids(
    es: AsyncElasticsearch,
    project: str,
    ids: list[str],
    *,
    retry_s: float = DEFAULT_RETRY_S,
) -> set[str]:
    """Those of ``ids`` that are documents of the project's index.

    One query: at most the index's ``max_result_window`` ids (10,000 by default).
    """
    if not ids:
        return set()
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.search(
                index=project,
                query=_documents_with_ids(ids),
                size=len(ids),
                _source=False,
                filter_path=_HIT_IDS,
            )
    return set(_hit_ids(res))


async def fetch_documents(
    es: AsyncElasticsearch,
    project: str,
    ids: list[str],
    *,
    retry_s: float = DEFAULT_RETRY_S,
) -> list[Document]:
    """The documents with these ids (unknown ids are left out), in ``ids`` order."""
    async for attempt in _retrying(es, retry_s):
        with attempt, _project_index(es, project):
            res = await es.search(
                index=project,
                query=_documents_with_ids(ids),
                size=len(ids),
                _source_includes=_SOURCE_FIELDS,
            )
    by_id = {hit["_id"]: document_from_hit(hit) for hit in res["hits"]["hits"]}
    return [by_id[i] for i in ids if i in by_id]


def _documents_with_ids(ids: list[str]) -> dict:
    return {
        "bool": {"filter": [{"ids": {"values": ids}}, {"term": {"type": "Document"}}]}
    }


def _hit_ids(res: dict) -> list[str]:
    # Filtered to the hits' ids, an answer without hits has no "hits" at all.
    return [hit["_id"] for hit in res.get("hits", {}).get("hits", [])]


@contextmanager
def _project_index(es: AsyncElasticsearch, project: str):
    """Turns the search's "no such index" answer into an error naming the project."""
    try:
        yield
    except NotFoundError as e:
        msg = f'project "{project}" has no Elasticsearch index at {_address(es)}'
        raise UnknownProject(msg) from e


def _retrying(es: AsyncElasticsearch, retry_s: float) -> AsyncRetrying:
    async def give_up(state):
        msg = (
            f"Elasticsearch unavailable at {_address(es)} for {retry_s:.0f}s"
            f" ({state.attempt_number} attempts, last: {state.outcome.exception()}):"
            " check that it runs and that ML_WORKER_ES_ADDRESS points to it"
        )
        raise ElasticsearchUnavailable(msg) from state.outcome.exception()

    def log_retry(state):
        logger.warning(
            "Elasticsearch at %s failed (%s), retrying in %.1fs",
            _address(es),
            state.outcome.exception().__class__.__name__,
            state.next_action.sleep,
        )

    return AsyncRetrying(
        retry=retry_if_exception(_is_transient),
        wait=wait_exponential(multiplier=0.5, max=10.0),
        stop=stop_after_delay(retry_s),
        before_sleep=log_retry,
        retry_error_callback=give_up,
    )


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, ConnectionError):  # refused, reset, timed out
        return True
    return (
        isinstance(error, TransportError) and error.status_code in _TRANSIENT_STATUSES
    )


def _address(es: AsyncElasticsearch) -> str:
    """The server's address, without credentials."""
    hosts = es.transport.hosts or [{}]
    host = hosts[0]
    return f"{host.get('scheme', 'http')}://{host.get('host')}:{host.get('port')}"


def document_from_hit(hit: dict) -> Document:
    """The document of an Elasticsearch hit (its ``_id`` and ``_source``)."""
    source = hit.get("_source", {})
    tags = source.get("tags") or []
    content = source.get("content") or ""
    return Document(
        id=hit["_id"],
        content=content,
        content_hash=hashlib.sha256(
            content.encode("utf-8", "surrogatepass")
        ).hexdigest(),
        root_id=source.get("rootDocument") or hit["_id"],
        path=source.get("path"),
        title=source.get("title"),
        content_type=source.get("contentType"),
        language=source.get("language"),
        tags=[tags] if isinstance(tags, str) else list(tags),
    )
