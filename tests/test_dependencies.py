import warnings

import pytest

from ml_worker import constants, dependencies, tasks
from ml_worker.icij.dependencies import lifespan_task_client
from ml_worker.invoke import invoke


async def test_tasks_fail_clearly_outside_a_worker():
    with pytest.raises(
        dependencies.DependencyNotSetUp, match="vector database is not set up"
    ):
        await invoke(tasks.find_most_similar, {"project": "p", "queries": ["q"]})


async def test_lifespan_sets_up_and_tears_down(monkeypatch, es_url, tmp_path):
    from ml_worker.icij.app import app

    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
        assert dependencies.lifespan_config().es_address == es_url
        assert await dependencies.lifespan_es_client().ping()
        assert dependencies.lifespan_vector_db().list_tables().tables == []
        lifespan_task_client()
    with pytest.raises(dependencies.DependencyNotSetUp):
        dependencies.lifespan_es_client()
    with pytest.raises(dependencies.DependencyNotSetUp):
        lifespan_task_client()


async def test_vector_db_caches_are_bounded_by_the_settings(
    monkeypatch, lancedb_sessions, es_url, tmp_path
):
    from ml_worker.icij.app import app

    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_INDEX_CACHE_MB", "7")
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_METADATA_CACHE_MB", "3")
    async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
        pass
    ((sizes, _),) = lancedb_sessions
    assert sizes == {
        "index_cache_size_bytes": 7 << 20,
        "metadata_cache_size_bytes": 3 << 20,
    }


async def test_secrets_stay_out_of_logs_and_errors(monkeypatch, caplog, tmp_path):
    from ml_worker import documents
    from ml_worker.icij.app import app
    from ml_worker_dev.local_stack import free_port

    dead_es = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", dead_es)
    monkeypatch.setenv("ML_WORKER_ES_USERNAME", "elastic")
    monkeypatch.setenv("ML_WORKER_ES_PASSWORD", "es-secret-1")
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE_USER", "ds")
    monkeypatch.setenv("ML_WORKER_TASK_SERVICE_PASSWORD", "ds-secret-2")
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    caplog.set_level("DEBUG")
    async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
        config = dependencies.lifespan_config()
        es = dependencies.lifespan_es_client()
        with pytest.raises(documents.ElasticsearchUnavailable) as error:
            await documents.fetch_documents(es, "p", ["a"], retry_s=1.0)
        assert config.es_password is not None
        assert config.es_password.get_secret_value() == "es-secret-1"
    assert "worker config" in caplog.text and "Elasticsearch at" in caplog.text
    for secret in ("es-secret-1", "ds-secret-2"):
        assert secret not in caplog.text
        assert secret not in str(error.value)


@pytest.mark.parametrize(
    "runs, preloaded",
    [
        # Under `auto`, either packaged model may embed a project's documents.
        ({constants.VECTORIZE_DOCS}, ["model", "e5"]),
        ({constants.FIND_MOST_SIMILAR, constants.PING}, ["query encoder", "e5"]),
        ({constants.CREATE_VECTORIZATION_TASKS}, []),
    ],
)
async def test_a_worker_preloads_only_what_its_tasks_need(
    monkeypatch, runs, preloaded, es_url, tmp_path
):
    from ml_worker import embedding

    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    loaded = []
    monkeypatch.setattr(embedding, "load_model", lambda *_: loaded.append("model"))
    monkeypatch.setattr(
        embedding, "onnx_query_encoder", lambda *_, **__: loaded.append("query encoder")
    )
    monkeypatch.setattr(embedding, "loaded_e5", lambda: loaded.append("e5"))

    try:
        async with dependencies.worker_dependencies(None, runs):
            pass
    finally:
        embedding.loaded_query_encoder.cache_clear()

    assert loaded == preloaded


async def test_a_worker_silences_icij_workers_serializer_warnings(
    monkeypatch, es_url, tmp_path
):
    from ml_worker.icij.app import app

    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    message = "Pydantic serializer warnings:\n  Expected `datetime`"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
            for module in ("icij_common.registrable", "ml_worker.tasks"):
                warnings.warn_explicit(message, UserWarning, "x.py", 1, module=module)

    # icij-worker's, at every task event, silenced; anyone else's still shown.
    assert [str(w.message) for w in caught] == [message]
