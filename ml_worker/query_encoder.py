"""Query embeddings through ONNX Runtime, so that a search on a CPU waits less.

A search embeds one short query. The torch model spends most of that time in Python
between its few hundred small operations, holding the interpreter lock that the
full-text search running beside it needs too. ONNX Runtime runs the same transformer
in one native call: on 2 CPU cores a query took 4 to 5 ms against 10 in bfloat16
torch, and a whole search a quarter less time (docs/performance.md). Documents are
still embedded by the torch model, which computes batches faster.

The model's transformer is exported once per model and library versions and cached
on disk; the sentence-transformers pooling and normalization modules still run after
it. An export whose vectors disagree with the model's is not used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Transformer

logger = logging.getLogger(__name__)

# The lowest cosine between this encoder's vectors and the model's that is accepted.
MIN_AGREEMENT = 0.99
# Texts of a few lengths, the last longer than the model reads, to check an export.
_PROBES = [
    "tax",
    "Offshore companies registered by the same agent in 2014",
    " ".join(["the minutes of the board meeting were never filed"] * 60),
]


class QueryEncoder:
    """Embeds texts one at a time with an ONNX export of ``model``'s transformer."""

    def __init__(self, model: SentenceTransformer, onnx_path: Path, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self._model = model
        # The modules after the transformer: pooling, normalization...
        self._head = list(model)[1:]

    def encode(self, texts: list[str]) -> np.ndarray:
        # One text per call: the export takes a batch of one, so no padding.
        return np.vstack([self._encode_one(text) for text in texts])

    def _encode_one(self, text: str) -> np.ndarray:
        features = self._model.preprocess([text])
        (tokens,) = self._session.run(
            None,
            {
                "input_ids": features["input_ids"].numpy(),
                "attention_mask": features["attention_mask"].numpy(),
            },
        )
        features = {
            "token_embeddings": torch.from_numpy(tokens),
            "attention_mask": features["attention_mask"],
        }
        with torch.inference_mode():
            for module in self._head:
                features = module(features)
        return features["sentence_embedding"].float().numpy()


def onnx_query_encoder(
    model_path: str, reference: SentenceTransformer, *, threads: int
) -> QueryEncoder:
    """A query encoder for the model at ``model_path`` (a folder or hub id).

    ``reference``: the model as this process runs it, which the encoder's vectors
    must agree with. Raises ValueError when the model is not a transformer followed
    by other modules, or when its export disagrees with ``reference``; a model that
    torch cannot export raises torch's own error.
    """
    if not isinstance(reference[0], Transformer):
        msg = f"{model_path} does not start with a transformer module"
        raise ValueError(msg)
    path = _cache_dir() / f"{_cache_key(model_path)}.onnx"
    if not path.exists():
        # From a float32 copy, dropped once exported: ``reference`` may be bfloat16.
        _export(SentenceTransformer(model_path, device="cpu"), path)
        logger.info("exported the query encoder of %s to %s", model_path, path)
    encoder = QueryEncoder(reference, path, threads)
    agreement = _cosines(encoder.encode(_PROBES), reference.encode(_PROBES)).min()
    if agreement < MIN_AGREEMENT:
        msg = (
            f"the ONNX export of {model_path} disagrees with the model (cosine"
            f" {agreement:.4f} < {MIN_AGREEMENT})"
        )
        raise ValueError(msg)
    return encoder


def _export(model: SentenceTransformer, path: Path) -> None:
    """Write the ONNX graph of ``model``'s transformer (float32) to ``path``."""
    transformer = _TokenEmbeddings(model[0].auto_model).eval()
    example = model.preprocess(["an example query"])
    with warnings.catch_warnings():
        # torch notes that both inputs' axes share the name they are given.
        warnings.filterwarnings("ignore", "# The axis name", UserWarning)
        program = torch.onnx.export(
            transformer,
            (example["input_ids"], example["attention_mask"]),
            dynamo=True,
            dynamic_shapes=({1: "tokens"}, {1: "tokens"}),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_embeddings"],
            verbose=False,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside then renamed: workers starting together never read half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        program.save(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


class _TokenEmbeddings(torch.nn.Module):
    """The transformer's last hidden state, from token ids and their mask."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask):
        outputs = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return outputs.last_hidden_state


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ml-worker" / "query-encoders"


def _cache_key(model_path: str) -> str:
    """Exports differ by model and by the versions of the libraries that made them."""
    versions = [version(package) for package in ("torch", "transformers", "onnxscript")]
    digest = hashlib.sha256("|".join([model_path, *versions]).encode()).hexdigest()
    return f"{Path(model_path).name}-{digest[:16]}"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)
