"""Which model a project's table gets, and why: ``auto`` chooses from its languages.

The packaged English model (all-MiniLM-L6-v2) was trained on English only. On the
Debian descriptions set (600 documents in 6 languages) its vectors ranked the right
document at MRR@10 0.667 for queries in the document's language and 0.579 for
English ones, against 0.898 and 0.765 for the packaged multilingual model
(multilingual-e5-small), which costs 2.4 to 3.8 times its CPU to vectorize
(docs/retrieval.md). So ``auto`` gives a project whose documents are nearly all in
English the English model, and any other project the multilingual one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ml_worker.constants import AUTO_MODEL, MODEL_ALIASES

ENGLISH = "ENGLISH"  # Datashare's name of the language
# Share of a project's documents in English for ``auto`` to choose the English
# model: below it, a tenth of the documents or more would get weak vectors.
ENGLISH_SHARE = 0.9
# Languages named in a choice's reason; the others are summed up.
_NAMED_LANGUAGES = 3


@dataclass(frozen=True)
class ModelChoice:
    model: str  # an alias where the model has one, else its id
    reason: str  # why this model, in a few words, for the task's result


def choose_model(
    requested: str,
    languages: Mapping[str, int],
    *,
    existing: str | None = None,
    named: bool = True,
) -> ModelChoice:
    """The model of a project's table: ``requested`` (an alias, an id, or ``auto``),
    for a project with these document counts by language, whose table, if it has
    one, was created with ``existing``. ``named``: whether the task named the
    model, rather than the worker's default."""
    if requested != AUTO_MODEL:
        source = "named by the task" if named else "the workers' default model"
        return ModelChoice(alias(requested), source)
    if existing is not None:
        return ModelChoice(alias(existing), "the project's table was created with it")
    total = sum(languages.values())
    english = languages.get(ENGLISH, 0)
    if not total:
        return ModelChoice("english", "no documents to tell the languages by")
    mix = described_mix(languages)
    if english >= ENGLISH_SHARE * total:
        return ModelChoice("english", f"auto: {mix}")
    return ModelChoice("multilingual", f"auto: {mix}")


def alias(model: str) -> str:
    """The short name of a packaged model, else the model as given."""
    for short, model_id in MODEL_ALIASES.items():
        if model in (short, model_id):
            return short
    return model


def described_mix(languages: Mapping[str, int]) -> str:
    """Document shares by language, largest first: ``62% FRENCH, 30% ENGLISH, 8%
    other``."""
    total = sum(languages.values())
    ranked = sorted(languages.items(), key=lambda item: item[1], reverse=True)
    parts = [f"{_percent(n, total)} {name}" for name, n in ranked[:_NAMED_LANGUAGES]]
    rest = sum(n for _, n in ranked[_NAMED_LANGUAGES:])
    if rest:
        parts.append(f"{_percent(rest, total)} other")
    return ", ".join(parts)


def _percent(count: int, total: int) -> str:
    share = 100 * count / total
    # Never "100%" or "0%" for a share that is neither.
    if 0 < share < 1:
        return "<1%"
    if 99 < share < 100:
        return ">99%"
    return f"{share:.0f}%"
