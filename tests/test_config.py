import json

import pytest
from pydantic import ValidationError

from ml_worker.config import MLWorkerConfig, TaskServiceKind


def test_defaults_are_documented_and_local():
    config = MLWorkerConfig()
    assert config.es_address == "http://localhost:9200"
    assert config.task_service is TaskServiceKind.ICIJ
    for name, field in MLWorkerConfig.model_fields.items():
        assert field.description, f"{name} has no description"


def test_file_then_environment(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"es_address": "http://file:9200", "model": "file-model"})
    )
    monkeypatch.setenv("ML_WORKER_MODEL", "env-model")
    config = MLWorkerConfig.from_file(path)
    assert config.es_address == "http://file:9200"
    assert config.model == "env-model"
    assert config.vectorize_batch_size == 64  # in neither: the default


def test_environment_wins_over_the_file_for_json_settings(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"vector_db_storage_options": {"aws_region": "file-region"}})
    )
    monkeypatch.setenv(
        "ML_WORKER_VECTOR_DB_STORAGE_OPTIONS", json.dumps({"aws_region": "env-region"})
    )
    options = MLWorkerConfig.from_file(path).vector_db_storage_options
    assert {k: v.get_secret_value() for k, v in options.items()} == {
        "aws_region": "env-region"
    }


def test_unknown_setting_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"es_adress": "typo"}))
    with pytest.raises(ValidationError, match="es_adress"):
        MLWorkerConfig.from_file(path)


def test_secrets_are_masked(monkeypatch):
    monkeypatch.setenv("ML_WORKER_ES_PASSWORD", "hunter2")
    config = MLWorkerConfig()
    assert "hunter2" not in config.model_dump_json()
    assert "hunter2" not in repr(config)


def test_storage_options_are_read_from_json_and_masked(monkeypatch):
    options = {"aws_endpoint": "http://minio:9000", "aws_secret_access_key": "hunter3"}
    monkeypatch.setenv("ML_WORKER_VECTOR_DB_STORAGE_OPTIONS", json.dumps(options))
    config = MLWorkerConfig()
    assert {
        k: v.get_secret_value() for k, v in config.vector_db_storage_options.items()
    } == options
    for text in (config.model_dump_json(), repr(config)):
        assert "hunter3" not in text and "minio" not in text
