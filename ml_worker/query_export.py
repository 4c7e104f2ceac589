"""Export a model's transformer to ONNX for the torch-free query encoder.

Run as a child process by ``ml_worker.query_encoder``, which must not import torch:

    python -m ml_worker.query_export MODEL PATH

The export is written aside, checked (the query encoder's tokenizer, this export and
its numpy pooling must give the model's vectors, to a cosine of ``MIN_AGREEMENT``),
and only then renamed to PATH: processes reading PATH never see half a file or an
export that disagrees. Exits non-zero with the reason on its last line of stderr.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from ml_worker.exceptions import QueryEncoderExportFailed
from ml_worker.model_files import model_files, resolve_model
from ml_worker.query_encoder import MIN_AGREEMENT, PROBES, QueryEncoder


def export(model: str, path: Path) -> None:
    """Write the checked export of ``model``'s transformer to ``path``.

    Raises QueryEncoderExportFailed when the encoder's vectors disagree with the
    model's.
    """
    reference = SentenceTransformer(resolve_model(model), device="cpu")  # float32
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        _export(reference, Path(tmp))
        encoder = QueryEncoder(model_files(model), Path(tmp), threads=0)
        reference_vectors = reference.encode_query(PROBES)
        agreement = _cosines(encoder.encode(PROBES), reference_vectors).min()
        if agreement < MIN_AGREEMENT:
            msg = (
                f"the query encoder of {model} disagrees with the model (cosine"
                f" {agreement:.4f} < {MIN_AGREEMENT})"
            )
            raise QueryEncoderExportFailed(msg)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _export(model: SentenceTransformer, path: Path) -> None:
    """Write the ONNX graph of ``model``'s transformer (float32) to ``path``."""
    transformer = _TokenEmbeddings(model[0].auto_model).eval()  # type: ignore[arg-type]
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
    if program is None:  # only the legacy exporter returns nothing
        raise RuntimeError(f"torch exported no ONNX program of {path.stem}")
    program.save(str(path))


class _TokenEmbeddings(torch.nn.Module):
    """The transformer's last hidden state, from token ids and their mask."""

    def __init__(self, transformer: torch.nn.Module):
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids, attention_mask):
        outputs = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        return outputs.last_hidden_state


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def main() -> None:
    model, path = sys.argv[1:]
    try:
        export(model, Path(path))
    # The parent reads the last line: the reason, whatever failed.
    except Exception as e:  # noqa: BLE001
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
