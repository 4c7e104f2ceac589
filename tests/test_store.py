import subprocess
import sys
import threading
from typing import Any

import pyarrow as pa
import pytest

from ml_worker import store
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.exceptions import OUTAGES
from ml_worker.store import migration


@pytest.mark.parametrize("project", ["../x", "/abs/path", "a/b", "", ".hidden", "a b"])
def test_a_project_id_that_cannot_name_a_table_is_refused(project, vector_db):
    with pytest.raises(store.InvalidProject, match="invalid project"):
        store.check_project_name(project)
    with pytest.raises(store.InvalidProject, match="invalid project"):
        store.open_table(vector_db, project)


@pytest.mark.parametrize("project", ["local-datashare", "p_1", "ABC-2"])
def test_a_project_id_names_its_table(project, vector_db):
    store.check_project_name(project)
    store.open_or_create_table(
        vector_db, project, model=ENGLISH_MODEL, embed_batch_size=8
    )
    assert store.project_tables(vector_db) == [project]


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
        row: dict[str, Any] = {
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


def _rows(doc_id: str, n: int) -> list[dict]:
    """The rows of a document of ``n`` passages, as a worker writes them."""
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


def test_replace_documents_is_idempotent_and_drops_stale_passages(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    rows = _rows

    store.replace_documents(table, ["d1", "d2"], rows("d1", 3) + rows("d2", 2))
    store.replace_documents(table, ["d1", "d2"], rows("d1", 3) + rows("d2", 2))
    assert table.count_rows() == 5
    store.replace_documents(table, ["d1"], rows("d1", 1))
    assert table.count_rows("doc_id = 'd1'") == 1
    assert table.count_rows("doc_id = 'd2'") == 2
    store.replace_documents(table, ["d2"], [])
    assert table.count_rows() == 1


def _with_twins(table, doc_id: str, n: int) -> dict[str, list[int]]:
    """The document written, then its passages added once more, as two writers
    that both looked the keys up in the index leave them; each key's row ids."""
    store.replace_documents(table, [doc_id], _rows(doc_id, n))
    written = table.search().where(f"doc_id = '{doc_id}'").limit(None).to_list()
    table.add(pa.Table.from_pylist(written, schema=table.schema))
    return _row_ids(table)


def _row_ids(table) -> dict[str, list[int]]:
    rows = table.search().select([store.PASSAGE_ID]).with_row_id(True).limit(None)
    ids: dict[str, list[int]] = {}
    for row in rows.to_list():
        ids.setdefault(row[store.PASSAGE_ID], []).append(row["_rowid"])
    return ids


def test_passages_written_twice_at_once_keep_their_first_row(vector_db):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    twins = _with_twins(table, "d1", 3)
    assert {len(ids) for ids in twins.values()} == {2}

    store.replace_documents(table, ["d1"], _rows("d1", 3))  # the later writer's
    # Every writer keeps the same copy, the first: none removes the last one.
    assert _row_ids(table) == {key: [min(ids)] for key, ids in twins.items()}


def test_a_passage_whose_every_copy_was_deleted_is_written_again(
    vector_db, monkeypatch
):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    _with_twins(table, "d1", 3)
    delete = table.delete
    deletes: list[str] = []

    def with_another_writers_delete(where: str) -> None:
        # Another writer, that saw the rows after a compaction had moved them,
        # deleted the copies this one keeps.
        delete(where)
        if not deletes:
            delete("doc_id = 'd1'")
        deletes.append(where)

    monkeypatch.setattr(table, "delete", with_another_writers_delete)
    store.replace_documents(table, ["d1"], _rows("d1", 3))
    assert deletes, "the twins were not repaired"
    assert sorted(_row_ids(table)) == [
        store.passage_id("d1", None, i) for i in range(3)
    ]
    assert table.count_rows() == 3


def test_search_on_a_project_never_vectorized(vector_db):
    with pytest.raises(
        store.ProjectNotVectorized, match="no vectors yet: vectorize it first"
    ):
        store.open_table(vector_db, "never")


def test_concurrent_writes_of_the_same_documents_leave_each_passage_once(tmp_path):
    uri = str(tmp_path / "vectors")
    store.open_or_create_table(
        store.connect(uri), "p", model=ENGLISH_MODEL, embed_batch_size=8
    )
    rows: list[dict[str, Any]] = [
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
    uri = str(tmp_path / "vectors")
    if bounded:
        db = store.connect(uri, index_cache_mb=1, metadata_cache_mb=1)
    else:
        db = store.connect(uri)
    table = store.open_or_create_table(db, "p", model=ENGLISH_MODEL, embed_batch_size=8)
    for batch in range(60):
        row: dict[str, Any] = {
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
    rows: list[dict[str, Any]] = [
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
    assert migration.pending_step(table) is None  # declared the primary key too
    rows = table.search().limit(None).to_list()
    assert sorted(r[store.PASSAGE_ID] for r in rows) == sorted(
        store.passage_id(r["doc_id"], r["content_hash"], r["passage"]) for r in rows
    )
    # Written again with a new version, a document keeps that version alone.
    new: list[dict[str, Any]] = [
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


def test_a_local_database_is_never_probed(tmp_path):
    # The probe is boto3's: a process that writes and drops a local table without
    # importing it sent no probe (the test process itself has boto3 imported).
    script = f"""
import sys
from ml_worker import store
from ml_worker.store import migration
db = store.connect({str(tmp_path / "vectors")!r})
table = store.open_or_create_table(db, "p", model={ENGLISH_MODEL!r}, embed_batch_size=8)
store.writable_table(db, "p")
store.drop_table(db, "p")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore")))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "[]"


def test_a_change_that_keeps_losing_commits_is_a_retryable_error(vector_db):
    table = store.open_or_create_table(
        vector_db, "busy", model=ENGLISH_MODEL, embed_batch_size=8
    )
    attempts = []

    def losing():
        attempts.append(1)
        raise RuntimeError(
            "lance error: Too many concurrent writers. Attempted 5 times"
        )

    with pytest.raises(store.TableBusy, match="other writers kept committing first"):
        store.retrying_commits(table, losing, attempts=2)
    assert len(attempts) == 2
    assert store.TableBusy in OUTAGES  # the worker retries the task
