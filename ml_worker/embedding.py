"""The LanceDB embedding function that computes every vector of a project table.

LanceDB stores the function's settings in the table's metadata and rebuilds it when
the table is opened, so the table itself knows how to embed rows and queries. Only the
model id is stored: the device and the precision are chosen by the process that opens
the table, and a packaged model id is resolved to its files at run time, never stored
as a path. Queries are embedded without torch (``query_encoder``), documents by the
model itself: torch and the model are imported by the first document embedded, so
processes that only search or create tables never hold them.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import numpy as np
from lancedb.embeddings import register
from lancedb.embeddings.sentence_transformers import SentenceTransformerEmbeddings

from ml_worker.chunking import (
    PASSAGE_OVERLAP_TOKENS,
    PASSAGE_TOKENS,
    Passage,
    split_passages,
)
from ml_worker.model_files import model_files, not_found, resolve_model
from ml_worker.query_encoder import QueryEncoder, onnx_query_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

EMBEDDING_FUNCTION_NAME = "ml-worker-sentence-transformers"

# Each new input shape makes torch's CPU kernels build and cache code for it: padded
# only to its longest passage, every batch was a new shape, and a worker's memory
# grew with the passages it embedded (+430 MiB over 1,200 documents). Padded to a
# multiple of 32 tokens, a model of 256 tokens sees 8 widths; no slower, measured.
PAD_TO_MULTIPLE_OF = 32

_device = "auto"
_precision = "auto"
_threads: int | None = None
_query_encoder = "auto"


def use_device(
    device: str, precision: str = "auto", threads: int | None = None
) -> None:
    """Run this process's models on ``device`` (`auto`: CUDA when present), in
    ``precision`` (`auto`: bfloat16 where the device computes it natively), with
    ``threads`` CPU threads (None: one per core)."""
    global _device, _precision, _threads
    _device, _precision, _threads = device, precision, threads


def use_query_encoder(kind: str) -> None:
    """Embed this process's queries with ``kind``: `onnx` (ONNX Runtime, without
    torch), `torch` (the model itself) or `auto` (ONNX Runtime, or the model itself
    for a model that ONNX Runtime cannot embed as it does)."""
    global _query_encoder
    _query_encoder = kind
    process_query_encoder.cache_clear()


def resolve_device() -> str:
    if _device != "auto":
        return _device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(device: str) -> str:
    """``float32`` or ``bfloat16``: the precision of models on ``device``."""
    if _precision != "auto":
        return _precision
    return "bfloat16" if _native_bfloat16(device) else "float32"


def _native_bfloat16(device: str) -> bool:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    # Without these instructions torch emulates bfloat16 on a CPU, slower than float32.
    cpu_checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in cpu_checks)


@functools.lru_cache(maxsize=4)
def load_model(
    model: str, device: str, precision: str = "float32"
) -> SentenceTransformer:
    """One model instance per process, device and precision, whatever the number of
    tables."""
    import torch
    from sentence_transformers import SentenceTransformer

    if _threads is not None:
        torch.set_num_threads(_threads)
    try:
        return SentenceTransformer(
            resolve_model(model),
            device=device,
            model_kwargs={"dtype": getattr(torch, precision)},
        )
    except (OSError, RuntimeError, ValueError) as e:  # what the hub client raises
        raise not_found(model) from e


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
        return process_model(self.name)

    def ndims(self) -> int:
        # From the model's files: creating a table never loads the model.
        return model_files(self.name).ndims

    @property
    def max_tokens(self) -> int:
        """Longest input, in model tokens, the model reads without truncating."""
        return self.embedding_model.max_seq_length

    def passages(self, content: str) -> list[Passage]:
        """``content`` cut into passages that this model reads whole."""
        return split_passages(
            content,
            self.embedding_model.tokenizer,
            max_tokens=min(PASSAGE_TOKENS, self.max_tokens),
            overlap_tokens=PASSAGE_OVERLAP_TOKENS,
        )

    def generate_embeddings(self, texts) -> list:
        vectors = self.embedding_model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            processing_kwargs={"text": {"pad_to_multiple_of": self._padding()}},
        )
        return self._normalized(vectors).tolist()

    def _padding(self) -> int | None:
        # Never wider than the model reads: its position embeddings may end there.
        fits = self.max_tokens % PAD_TO_MULTIPLE_OF == 0
        return PAD_TO_MULTIPLE_OF if fits else None

    def compute_query_embeddings(self, query, *args, **kwargs) -> list:
        encoder = process_query_encoder(self.name)
        if encoder is None:
            return super().compute_query_embeddings(query, *args, **kwargs)
        return self._normalized(encoder.encode(self.sanitize_input(query))).tolist()

    def _normalized(self, vectors: np.ndarray) -> np.ndarray:
        if not self.normalize:
            return vectors
        # In float32: a bfloat16 model's own normalization is off by up to 0.2%.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def process_model(model: str) -> SentenceTransformer:
    """``model`` on this process's device, in its precision."""
    device = resolve_device()
    return load_model(model, device, resolve_precision(device))


@functools.lru_cache(maxsize=4)
def process_query_encoder(model: str) -> QueryEncoder | None:
    """This process's torch-free encoder of ``model``'s queries, or None when the
    model itself embeds them."""
    if _query_encoder == "torch":
        return None
    try:
        return onnx_query_encoder(model, threads=_threads or 0)
    # Exporting can fail in many ways (a model torch.export cannot trace, a missing
    # package...); under `auto` the model itself still embeds the queries.
    except Exception as e:
        if _query_encoder == "onnx":
            raise
        logger.warning(
            "queries of %s are embedded by the model itself, and this process now"
            " holds torch: %s",
            model,
            e,
        )
        return None


def embedder(model: str, batch_size: int = 64) -> Embedder:
    model_files(model)  # fail now, clearly, on an unknown model
    return Embedder.create(name=model, batch_size=batch_size)
