import pytest

from ml_worker import documents
from ml_worker.datashare_index import bulk_index, create_project_index
from tests.corpus import datashare_corpus


@pytest.fixture
async def seeded(es, project):
    items, doc_ids = datashare_corpus(25)
    await create_project_index(es, project)
    await bulk_index(es, project, items)
    return doc_ids


async def test_list_document_ids_gives_documents_only(es, project, seeded):
    ids = await documents.list_document_ids(es, project, page_size=7)
    assert sorted(ids) == sorted(seeded)


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
    with pytest.raises(documents.UnknownProject, match="no-such-project.*has no"):
        await documents.list_document_ids(es, "no-such-project", page_size=5)
    with pytest.raises(documents.UnknownProject, match="127.0.0.1"):
        await documents.fetch_documents(es, "no-such-project", ["a"])


async def test_an_unreachable_server_is_retried_then_named():
    from ml_worker.local_stack import free_port

    url = f"http://127.0.0.1:{free_port()}"
    es = documents.es_client(url)
    try:
        with pytest.raises(documents.ElasticsearchUnavailable, match=url):
            await documents.fetch_documents(es, "p", ["a"], retry_s=1.0)
    finally:
        await es.close()
