import pytest

from ml_worker import embedding
from ml_worker.config import DEFAULT_MODEL


def test_packaged_model_resolves_to_a_local_folder():
    path = embedding.resolve_model(DEFAULT_MODEL)
    assert path != DEFAULT_MODEL
    assert embedding.resolve_model("some/hub-model") == "some/hub-model"


def test_default_model_embeds_without_a_hub():
    function = embedding.embedder(DEFAULT_MODEL)
    vectors = function.compute_query_embeddings(["a cat", "a kitten", "tax havens"])
    assert function.ndims() == 384
    cat, kitten, tax = (sum(a * b for a, b in zip(vectors[0], v)) for v in vectors)
    assert kitten > tax


def test_unknown_model_names_itself():
    with pytest.raises(embedding.ModelNotFound, match="no-such/model"):
        embedding.embedder("no-such/model")
