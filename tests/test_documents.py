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


async def test_iter_document_ids_yields_documents_only(es, project, seeded):
    ids = [i async for i in documents.iter_document_ids(es, project, page_size=7)]
    assert sorted(ids) == sorted(seeded)
    assert await documents.count_documents(es, project) == len(seeded)


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
        await documents.count_documents(es, "no-such-project")
    with pytest.raises(documents.UnknownProject, match="127.0.0.1"):
        [i async for i in documents.iter_document_ids(es, "no-such-project", page_size=5)]
