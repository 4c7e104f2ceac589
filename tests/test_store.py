import pytest

from ml_worker import store
from ml_worker.config import DEFAULT_MODEL


@pytest.mark.parametrize("project", ["../x", "/abs/path", "a/b", "", ".hidden", "a b"])
def test_table_name_refuses_paths_and_odd_names(project):
    with pytest.raises(store.InvalidProject, match="invalid project"):
        store.table_name(project)


@pytest.mark.parametrize("project", ["local-datashare", "p_1", "ABC-2"])
def test_table_name_accepts_project_ids(project):
    assert store.table_name(project) == project


def test_table_stores_the_model_id_not_a_path(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=DEFAULT_MODEL, embed_batch_size=8
    )
    metadata = table.schema.metadata[b"embedding_functions"].decode()
    assert DEFAULT_MODEL in metadata
    assert "site-packages" not in metadata and "/model" not in metadata
    assert "device" not in metadata
    assert store.table_model(vector_db.open_table("p")) == DEFAULT_MODEL


def test_one_table_per_project(vector_db):
    for project in ("a", "b"):
        table = store.open_or_create_table(
            vector_db, project, model=DEFAULT_MODEL, embed_batch_size=8
        )
        row = dict(doc_id=f"{project}-doc", root_id=None, passage=0, start=0, end=5,
                   content="hello", path=None, title=None, content_type=None,
                   language=None, tags=[])
        store.replace_documents(table, [row["doc_id"]], [row])
    a = store.open_table(vector_db, "a").to_arrow()["doc_id"].to_pylist()
    assert a == ["a-doc"]


def test_model_mismatch_is_refused(vector_db):
    store.open_or_create_table(vector_db, "p", model=DEFAULT_MODEL, embed_batch_size=8)
    with pytest.raises(store.ModelMismatch, match="rebuild"):
        store.open_or_create_table(vector_db, "p", model="other", embed_batch_size=8)


def test_replace_documents_is_idempotent_and_drops_stale_passages(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=DEFAULT_MODEL, embed_batch_size=8
    )

    def rows(doc_id, n):
        return [
            dict(doc_id=doc_id, root_id=doc_id, passage=i, start=i, end=i + 1,
                 content=f"passage {i}", path=None, title=None, content_type=None,
                 language=None, tags=[])
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
    import threading

    uri = str(tmp_path / "vectors")
    store.open_or_create_table(
        store.connect(uri), "p", model=DEFAULT_MODEL, embed_batch_size=8
    )
    rows = [
        dict(doc_id=f"d{d}", root_id=None, passage=i, start=i, end=i + 1,
             content=f"document {d} passage {i}", path=None, title=None,
             content_type=None, language=None, tags=[])
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
    table = store.open_or_create_table(db, "p", model=DEFAULT_MODEL, embed_batch_size=8)
    for batch in range(60):
        row = dict(doc_id=f"d{batch}", root_id=None, passage=0, start=0, end=1,
                   content=f"document {batch}", path=None, title=None,
                   content_type=None, language=None, tags=[])
        store.replace_documents(table, [row["doc_id"]], [row])

    ((_, session),) = lancedb_sessions
    assert (session.size_bytes <= 2 * 2**20) is bounded
