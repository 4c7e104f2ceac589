import threading

import pyarrow as pa
import pytest

from ml_worker import app as app_module
from ml_worker import store
from ml_worker.constants import ENGLISH_MODEL


@pytest.mark.parametrize("project", ["../x", "/abs/path", "a/b", "", ".hidden", "a b"])
def test_table_name_refuses_paths_and_odd_names(project):
    with pytest.raises(store.InvalidProject, match="invalid project"):
        store.table_name(project)


@pytest.mark.parametrize("project", ["local-datashare", "p_1", "ABC-2"])
def test_table_name_accepts_project_ids(project):
    assert store.table_name(project) == project


def test_table_stores_the_model_id_not_a_path(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    metadata = table.schema.metadata[b"embedding_functions"].decode()
    assert ENGLISH_MODEL in metadata
    assert "site-packages" not in metadata and "/model" not in metadata
    assert "device" not in metadata
    assert store.table_model(vector_db.open_table("p")) == ENGLISH_MODEL


def test_one_table_per_project(vector_db):
    for project in ("a", "b"):
        table = store.open_or_create_table(
            vector_db, project, model=ENGLISH_MODEL, embed_batch_size=8
        )
        row = {
            "doc_id": f"{project}-doc",
            "root_id": None,
            "passage": 0,
            "start": 0,
            "end": 5,
            "content": "hello",
            "path": None,
            "title": None,
            "content_type": None,
            "language": None,
            "tags": [],
        }
        store.replace_documents(table, [row["doc_id"]], [row])
    a = store.open_table(vector_db, "a").to_arrow()["doc_id"].to_pylist()
    assert a == ["a-doc"]


def test_model_mismatch_is_refused(vector_db):
    store.open_or_create_table(vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8)
    with pytest.raises(store.ModelMismatch, match="rebuild"):
        store.open_or_create_table(vector_db, "p", model="other", embed_batch_size=8)


def test_replace_documents_is_idempotent_and_drops_stale_passages(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )

    def rows(doc_id, n):
        return [
            {
                "doc_id": doc_id,
                "root_id": doc_id,
                "passage": i,
                "start": i,
                "end": i + 1,
                "content": f"passage {i}",
                "path": None,
                "title": None,
                "content_type": None,
                "language": None,
                "tags": [],
            }
            for i in range(n)
        ]

    store.replace_documents(table, ["d1", "d2"], rows("d1", 3) + rows("d2", 2))
    store.replace_documents(table, ["d1", "d2"], rows("d1", 3) + rows("d2", 2))
    assert table.count_rows() == 5
    store.replace_documents(table, ["d1"], rows("d1", 1))
    assert table.count_rows("doc_id = 'd1'") == 1
    assert table.count_rows("doc_id = 'd2'") == 2
    store.replace_documents(table, ["d2"], [])
    assert table.count_rows() == 1


def test_search_on_a_project_never_vectorized(vector_db):
    with pytest.raises(store.ProjectNotVectorized, match="create_vectorization_tasks"):
        store.open_table(vector_db, "never")


def test_concurrent_writes_of_the_same_documents_leave_each_passage_once(tmp_path):
    uri = str(tmp_path / "vectors")
    store.open_or_create_table(
        store.connect(uri), "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    rows = [
        {
            "doc_id": f"d{d}",
            "root_id": None,
            "passage": i,
            "start": i,
            "end": i + 1,
            "content": f"document {d} passage {i}",
            "path": None,
            "title": None,
            "content_type": None,
            "language": None,
            "tags": [],
        }
        for d in range(10)
        for i in range(3)
    ]
    doc_ids = [f"d{d}" for d in range(10)]
    start = threading.Barrier(4)

    def write():
        table = store.open_table(store.connect(uri), "p")  # as another worker would
        start.wait()
        store.replace_documents(table, doc_ids, rows)

    writers = [threading.Thread(target=write) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    table = store.open_table(store.connect(uri), "p")
    keys = [(r["doc_id"], r["passage"]) for r in table.search().limit(None).to_list()]
    assert sorted(keys) == sorted((r["doc_id"], r["passage"]) for r in rows)


@pytest.mark.parametrize("bounded", [True, False])
def test_a_connection_bounds_its_caches(tmp_path, lancedb_sessions, bounded):
    # Each write commits versions whose metadata LanceDB caches: without a bound,
    # a worker's memory would grow with every batch it writes.
    limits = {"index_cache_mb": 1, "metadata_cache_mb": 1} if bounded else {}
    db = store.connect(str(tmp_path / "vectors"), **limits)
    table = store.open_or_create_table(db, "p", model=ENGLISH_MODEL, embed_batch_size=8)
    for batch in range(60):
        row = {
            "doc_id": f"d{batch}",
            "root_id": None,
            "passage": 0,
            "start": 0,
            "end": 1,
            "content": f"document {batch}",
            "path": None,
            "title": None,
            "content_type": None,
            "language": None,
            "tags": [],
        }
        store.replace_documents(table, [row["doc_id"]], [row])

    ((_, session),) = lancedb_sessions
    assert (session.size_bytes <= 2 * 2**20) is bounded


def _earlier_table(db, name: str, n_docs: int):
    """A table as an earlier version made it: no passage key."""
    from lancedb.embeddings import EmbeddingFunctionConfig

    from ml_worker.embedding import embedder

    function = embedder(ENGLISH_MODEL, 8)
    schema = store.passage_schema(function.ndims())
    table = db.create_table(
        name,
        schema=pa.schema([f for f in schema if f.name != store.PASSAGE_ID]),
        embedding_functions=[
            EmbeddingFunctionConfig(
                source_column="content", vector_column="vector", function=function
            )
        ],
    )
    rows = [
        {
            "doc_id": f"d{d}",
            "passage": i,
            "start": i,
            "end": i + 1,
            "content": f"passage {i}",
            "vector": [0.1] * function.ndims(),
            "content_hash": f"h{d}",
            "tags": [],
        }
        for d in range(n_docs)
        for i in range(2)
    ]
    table.add(pa.Table.from_pylist(rows, schema=table.schema))
    return table


def test_a_table_of_an_earlier_version_gets_its_passage_key(vector_db):
    _earlier_table(vector_db, "p", n_docs=3)
    barrier = threading.Barrier(4)
    tables = []

    def open_for_writes():  # as workers of the new version do, all at once
        barrier.wait()
        tables.append(store.writable_table(store.connect(vector_db.uri), "p"))

    threads = [threading.Thread(target=open_for_writes) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(tables) == 4
    table = store.open_table(vector_db, "p")
    assert not table.schema.field(store.PASSAGE_ID).nullable
    assert store._next_key_step(table) is None  # declared the primary key too
    rows = table.search().limit(None).to_list()
    assert sorted(r[store.PASSAGE_ID] for r in rows) == sorted(
        store.passage_id(r["doc_id"], r["content_hash"], r["passage"]) for r in rows
    )
    # Written again with a new version, a document keeps that version alone.
    new = [
        {
            "doc_id": "d1",
            "root_id": None,
            "passage": 0,
            "start": 0,
            "end": 3,
            "content": "new",
            "path": None,
            "title": None,
            "content_type": None,
            "language": None,
            "tags": [],
            "content_hash": "h1-new",
        }
    ]
    store.replace_documents(table, ["d1"], new)
    assert store.stored_hashes(table, ["d0", "d1"]) == {"d0": {"h0"}, "d1": {"h1-new"}}
    assert table.count_rows() == 5


def test_storage_options_are_handed_to_boto3_as_lancedb_reads_them():
    args = store._boto3_client_args(
        {
            "AWS_ENDPOINT": "http://minio:9000",
            "region": "eu-west-3",
            "access_key_id": "id",
            "aws_secret_access_key": "secret",
            "token": "session",
            "allow_http": "true",
            "virtual_hosted_style_request": "true",
        }
    )
    config = args.pop("config")
    assert args == {
        "endpoint_url": "http://minio:9000",
        "region_name": "eu-west-3",
        "aws_access_key_id": "id",
        "aws_secret_access_key": "secret",
        "aws_session_token": "session",
    }
    assert config.s3 == {"addressing_style": "virtual"}
    assert store._boto3_client_args({})["config"].s3 == {"addressing_style": "path"}


def test_a_local_database_is_never_probed(vector_db, monkeypatch):
    import boto3

    monkeypatch.setattr(boto3, "client", None)  # any probe would fail
    store.open_or_create_table(vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8)
    store.drop_table(vector_db, "p")


def test_a_write_that_keeps_losing_commits_is_a_retryable_error(vector_db, monkeypatch):
    table = store.open_or_create_table(
        vector_db, "busy", model=ENGLISH_MODEL, embed_batch_size=8
    )
    attempts = []

    def losing(*_):
        attempts.append(1)
        raise RuntimeError(
            "lance error: Too many concurrent writers. Attempted 5 times"
        )

    monkeypatch.setattr(store, "_replace", losing)
    monkeypatch.setattr(store.time, "sleep", lambda _: None)
    with pytest.raises(store.TableBusy, match="other writers kept committing first"):
        store.replace_documents(table, ["d"], [])
    assert len(attempts) == store._WRITE_ATTEMPTS
    assert store.TableBusy in app_module.OUTAGES  # the worker retries the task
