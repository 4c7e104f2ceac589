import pytest

from ml_worker import dependencies, tasks


async def test_tasks_fail_clearly_outside_a_worker():
    with pytest.raises(dependencies.DependencyNotSetUp, match="vector database is not set up"):
        await tasks.find_most_similar("p", ["q"])


async def test_lifespan_sets_up_and_tears_down(monkeypatch, es_url, tmp_path):
    from ml_worker.app import app

    monkeypatch.setenv("ML_WORKER_ES_ADDRESS", es_url)
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_URI", str(tmp_path / "vectors"))
    async with app.lifetime_dependencies(worker_config=None, worker_id="w"):
        assert dependencies.lifespan_config().es_address == es_url
        assert await dependencies.lifespan_es_client().ping()
        assert dependencies.lifespan_vector_db().list_tables().tables == []
        dependencies.lifespan_task_client()
    with pytest.raises(dependencies.DependencyNotSetUp):
        dependencies.lifespan_es_client()
