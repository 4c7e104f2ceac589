import pytest

from ml_worker import documents
from ml_worker.es_client import es_client
from ml_worker_dev.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus


@pytest.fixture
async def seeded(es, project):
    items, doc_ids = datashare_corpus(25)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


async def test_document_id_pages_give_documents_only_in_id_order(es, project, seeded):
    pages = [p async for p in documents.document_id_pages(es, project, page_size=7)]

    ids = [i for page in pages for i in page]
    assert ids == sorted(seeded)
    assert [len(p) for p in pages] == [7] * (len(ids) // 7) + [len(ids) % 7]
    assert await documents.count_documents(es, project) == len(seeded)


async def test_no_empty_page_follows_a_full_last_one(es, project, seeded):
    page_size = len(seeded)
    pages = documents.document_id_pages(es, project, page_size=page_size)
    assert [p async for p in pages] == [sorted(seeded)]


async def test_indexed_document_ids_are_documents_embedded_or_not(es, project, seeded):
    asked = ["doc-0004-attachment", "doc-0001", "unknown", "doc-0001-ne-0"]
    indexed = await documents.indexed_document_ids(es, project, asked)
    assert indexed == {"doc-0004-attachment", "doc-0001"}
    assert await documents.indexed_document_ids(es, project, ["unknown"]) == set()


async def test_fetch_documents_reads_routed_embedded_documents(es, project, seeded):
    ids = ["doc-0004-attachment", "doc-0001", "unknown", "doc-0001-ne-0"]
    docs = await documents.fetch_documents(es, project, ids)
    assert [d.id for d in docs] == ["doc-0004-attachment", "doc-0001"]
    attachment = docs[0]
    assert attachment.root_id == "doc-0004"
    assert attachment.content_type == "application/pdf"
    assert attachment.content
    assert docs[1].root_id == "doc-0001"
    assert docs[1].path == "/leak/folder-1/doc-0001.txt"
    assert docs[1].language == "ENGLISH"


async def test_unknown_project_names_the_index_and_server(es, es_url):
    with pytest.raises(documents.UnknownProject, match=r"no-such-project.*has no"):
        await anext(documents.document_id_pages(es, "no-such-project", page_size=5))
    with pytest.raises(documents.UnknownProject, match=r"no-such-project.*has no"):
        await documents.count_documents(es, "no-such-project")
    with pytest.raises(documents.UnknownProject, match=r"127\.0\.0\.1"):
        await documents.fetch_documents(es, "no-such-project", ["a"])


async def test_an_unreachable_server_is_retried_then_named():
    from ml_worker_dev.local_stack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    es = es_client(url)
    try:
        with pytest.raises(documents.ElasticsearchUnavailable, match=url):
            await documents.fetch_documents(es, "p", ["a"], retry_s=1.0)
    finally:
        await es.close()


async def test_an_index_without_datashares_mapping_is_named_with_the_fix(es, project):
    # Indexed by hand: Elasticsearch's dynamic mapping makes `type` and `language`
    # text fields.
    source = {"type": "Document", "content": "A text.", "language": "ENGLISH"}
    await es.index(index=project, id="a", document=source, refresh=True)

    with pytest.raises(documents.InvalidProjectIndex) as error:
        await documents.check_mapping(es, project)

    assert str(error.value) == (
        f'project "{project}": its index lacks Datashare\'s mapping (type is text,'
        " language is text, where Datashare maps keyword): index its documents with"
        " Datashare, or create the index with Datashare's mapping before adding them"
    )


async def test_datashares_mapping_passes(es, project, seeded):
    await documents.check_mapping(es, project)
