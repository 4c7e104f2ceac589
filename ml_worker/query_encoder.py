"""Query embeddings through ONNX Runtime and numpy, without torch.

A search embeds one short query. The torch model spends most of that time in Python
between its few hundred small operations, holding the interpreter lock that the
full-text search running beside it needs too. ONNX Runtime runs the same transformer
in one native call: on 2 CPU cores a query took 4 to 5 ms against 10 in bfloat16
torch, and a whole search a quarter less time (docs/performance.md). And a process
that never imports torch stays small: a search worker holds no model but this one.

The query, after the model's query prompt if it has one, goes through the model's
own tokenizer (its ``tokenizer.json``, read by
the ``tokenizers`` library), the ONNX export of its transformer, then its pooling
and normalization, in numpy, as its sentence-transformers modules describe them.
Documents are still embedded by the torch model, which computes batches faster.

The transformer is exported once per model and library versions, by a child process
(``ml_worker.query_export``, which needs torch), and cached on disk only once this
very pipeline's vectors agree with the model's.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

import numpy as np

from ml_worker.exceptions import QueryEncoderExportFailed, UnsupportedModel
from ml_worker.model_files import ModelFiles, model_files, pooling_modes, resolve_model

logger = logging.getLogger(__name__)

# The lowest cosine between this encoder's vectors and the model's that is accepted.
MIN_AGREEMENT = 0.99
# Texts of a few lengths, the last longer than the model reads, to check an export.
PROBES = [
    "tax",
    "Offshore companies registered by the same agent in 2014",
    " ".join(["the minutes of the board meeting were never filed"] * 60),
]
# An export took about a minute on 2 busy cores; a hung one must not hang a worker.
EXPORT_TIMEOUT_S = 900

# Poolings of one unpadded text, by sentence-transformers' mode names. Its other
# modes (lasttoken, weightedmean) are decoder models', whose inputs (an end token
# appended, left padding, prompts) this pipeline does not reproduce.
_POOLINGS = {
    "cls": lambda tokens: tokens[0],
    "mean": lambda tokens: tokens.mean(axis=0),
    "max": lambda tokens: tokens.max(axis=0),
    "mean_sqrt_len_tokens": lambda tokens: tokens.sum(axis=0) / np.sqrt(len(tokens)),
}
_ESCAPE = "set query_encoder to `torch` (ML_WORKER_QUERY_ENCODER=torch) to embed its"
_ESCAPE += " queries with the model itself, which makes search workers load torch"


class QueryEncoder:
    """Embeds texts one at a time: tokenizer, ONNX transformer, numpy pooling."""

    def __init__(self, files: ModelFiles, onnx_path: Path, threads: int):
        import onnxruntime

        self._tokenizer = _tokenizer(files)
        self._poolings, self._normalize = _head(files)
        # As the model's own encode_query: e5's "query: ", an instruction...
        self._prompt = files.query_prompt
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: one per core
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Iterable[str]) -> np.ndarray:
        # One text per call: the export takes a batch of one, so no padding.
        return np.vstack([self._encode_one(text) for text in texts])

    def _encode_one(self, text: str) -> np.ndarray:
        encoding = self._tokenizer.encode(self._prompt + text)
        (tokens,) = self._session.run(
            None,
            {
                "input_ids": np.array([encoding.ids], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            },
        )
        vector = np.concatenate([pool(tokens[0]) for pool in self._poolings])
        if self._normalize:
            vector = vector / max(np.linalg.norm(vector), 1e-12)
        return vector.astype(np.float32)


def check_supported(files: ModelFiles) -> None:
    """Raises UnsupportedModel, naming the setting to change, when this pipeline
    cannot embed ``files``' queries as the model does."""
    _head(files)
    _max_tokens(files)
    if not (files.folder / "tokenizer.json").is_file():
        msg = f'model "{files.model}" has no tokenizer.json: {_ESCAPE}'
        raise UnsupportedModel(msg)


def onnx_query_encoder(model: str, *, threads: int) -> QueryEncoder:
    """A query encoder for ``model``, exported by a child process if not cached.

    Raises UnsupportedModel when the model's queries cannot be embedded without
    torch, QueryEncoderExportFailed when the export fails or disagrees with the model.
    """
    files = model_files(model)
    check_supported(files)
    path = export_path(model)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Workers starting together export once: the others wait, then read it.
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                _export_in_child(model, path)
    return QueryEncoder(files, path, threads)


def export_path(model: str) -> Path:
    """Where ``model``'s export is cached: exports differ by model and by the
    versions of the libraries that made them."""
    resolved = resolve_model(model)
    versions = [version(package) for package in ("torch", "transformers", "onnxscript")]
    digest = hashlib.sha256("|".join([resolved, *versions]).encode()).hexdigest()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    name = f"{Path(resolved).name}-{digest[:16]}.onnx"
    return Path(base) / "ml-worker" / "query-encoders" / name


def _export_in_child(model: str, path: Path) -> None:
    # A child process: torch, the model and the export (about 1.5 GiB) are given
    # back to the system once it ends, and this process never imports torch.
    logger.info("exporting the query encoder of %s, once for this machine", model)
    command = [sys.executable, "-m", "ml_worker.query_export", model, str(path)]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        msg = f"exporting the query encoder of {model} took over {EXPORT_TIMEOUT_S} s"
        raise QueryEncoderExportFailed(msg) from e
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or ["no message"]
        msg = f"exporting the query encoder of {model} failed: {last[0]}"
        raise QueryEncoderExportFailed(msg)
    logger.info("exported the query encoder of %s to %s", model, path)


def _tokenizer(files: ModelFiles):
    from tokenizers import Tokenizer, normalizers

    tokenizer = Tokenizer.from_file(str(files.folder / "tokenizer.json"))
    tokenizer.no_padding()
    # The model reads at most this many tokens; sentence-transformers cuts the rest.
    tokenizer.enable_truncation(_max_tokens(files))
    if files.read("sentence_bert_config.json").get("do_lower_case"):
        steps = [normalizers.Lowercase()]
        if tokenizer.normalizer is not None:
            steps.append(tokenizer.normalizer)
        tokenizer.normalizer = normalizers.Sequence(steps)
    return tokenizer


def _max_tokens(files: ModelFiles) -> int:
    configured = files.read("sentence_bert_config.json").get("max_seq_length")
    if configured:
        return configured
    # As sentence-transformers: the tokenizer's limit, capped by the model's.
    limits = [
        files.read("tokenizer_config.json").get("model_max_length"),
        files.read("config.json").get("max_position_embeddings"),
    ]
    known = [limit for limit in limits if limit and limit > 0]
    if not known:
        msg = f'model "{files.model}": its files do not say how many tokens it reads'
        raise UnsupportedModel(f"{msg}: {_ESCAPE}")
    return int(min(known))


def _head(files: ModelFiles) -> tuple[list, bool]:
    """The pooling functions and whether vectors are normalized, from the modules
    after the transformer."""
    kinds = [module.kind for module in files.modules]
    if kinds not in (
        ["Transformer", "Pooling"],
        ["Transformer", "Pooling", "Normalize"],
    ):
        msg = (
            f'model "{files.model}": its modules ({", ".join(kinds)}) are not a'
            f" transformer, a pooling and a normalization: {_ESCAPE}"
        )
        raise UnsupportedModel(msg)
    settings = files.settings(files.modules[1])
    modes = pooling_modes(settings)
    unsupported = [mode for mode in modes if mode not in _POOLINGS]
    if unsupported:
        msg = (
            f'model "{files.model}": its pooling mode {", ".join(unsupported)}'
            f" ({files.modules[1].path or '.'}/config.json) is not one of"
            f" {', '.join(_POOLINGS)}: {_ESCAPE}"
        )
        raise UnsupportedModel(msg)
    return [_POOLINGS[mode] for mode in modes], "Normalize" in kinds
