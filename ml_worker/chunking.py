"""Splitting a document's content into passages the model reads whole.

An embedding model reads at most ``max_seq_length`` tokens and silently drops the
rest, so a long document embedded as one vector is invisible past its first page.
Passages are cut in the model's own tokens, overlap so that a sentence on a boundary
is whole in one of them, and start and end on word boundaries so that re-tokenizing
a passage gives back the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing transformers imports torch
    from transformers import PreTrainedTokenizerBase

# Passage length and overlap, in model tokens (bench.quality, docs/retrieval.md):
# 256 (all-MiniLM-L6-v2's whole input) beat 128 and 64 in hybrid MRR@10, as the
# full-text side loses more on short passages than the vector side gains.
PASSAGE_TOKENS = 256
PASSAGE_OVERLAP_TOKENS = 32

# Room for the [CLS]/[SEP]-like tokens the model adds around every input.
_SPECIAL_TOKENS_MARGIN = 2


@dataclass(frozen=True)
class Passage:
    index: int
    start: int  # character offsets: content[start:end] == text
    end: int
    text: str


def split_passages(
    content: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_tokens: int = PASSAGE_TOKENS,
    overlap_tokens: int = PASSAGE_OVERLAP_TOKENS,
) -> list[Passage]:
    """The passages of ``content``, each at most ``max_tokens`` model tokens long.

    Empty or blank content has no passage.
    """
    window = max_tokens - _SPECIAL_TOKENS_MARGIN
    if not 0 <= overlap_tokens < window // 2:
        raise ValueError(f"overlap must be in [0, {window // 2}), got {overlap_tokens}")
    offsets, word_starts = _tokens(content, tokenizer)
    words_alone = _tokenizes_words_alone(tokenizer)
    passages: list[Passage] = []
    first = 0
    while first < len(offsets):
        last = _passage_end(word_starts, first, window)
        start, end = offsets[first][0], offsets[last - 1][1]
        text = content[start:end]
        # Whole words re-tokenize to the tokens they were cut from when the tokenizer
        # reads each word alone. Otherwise (a word cut in pieces, a tokenizer that
        # reads across words) the text may need more: give back tokens until it fits.
        whole_words = word_starts[first] and (last == len(offsets) or word_starts[last])
        exact = words_alone and whole_words
        while not exact and last - first > 1 and _n_tokens(text, tokenizer) > window:
            last -= 1
            end = offsets[last - 1][1]
            text = content[start:end]
        passages.append(Passage(len(passages), start, end, text))
        if last == len(offsets):
            break
        first = _next_start(word_starts, last - overlap_tokens, after=first)
    return passages


def _tokens(content: str, tokenizer) -> tuple[list[tuple[int, int]], list[bool]]:
    """Each token's character offsets, and whether it starts a word."""
    encoding = tokenizer(
        content,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        verbose=False,
    )
    offsets = encoding["offset_mapping"]
    word_ids = encoding.word_ids()
    starts = [
        i == 0 or w is None or w != word_ids[i - 1] for i, w in enumerate(word_ids)
    ]
    return offsets, starts


def _tokenizes_words_alone(tokenizer) -> bool:
    """Whether each word's tokens depend on that word alone, as WordPiece's do: a
    passage of whole words then re-tokenizes to the very tokens it was cut from,
    and re-tokenizing it to check (a third of the splitting's time) is not needed."""
    # Imported here: processes that never split a document (`ml-worker status`)
    # import this module through the embedding function; tokenizers took 0.08 s.
    from tokenizers import models

    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and isinstance(backend.model, models.WordPiece)


def _n_tokens(text: str, tokenizer) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def _passage_end(word_starts: list[bool], first: int, window: int) -> int:
    """One past the passage's last token: the last word end within the window."""
    last = first + window
    if last >= len(word_starts):
        return len(word_starts)
    for i in range(last, first + window // 2, -1):
        if word_starts[i]:
            return i
    return last  # a word longer than half the window: cut inside it


def _next_start(word_starts: list[bool], candidate: int, *, after: int) -> int:
    """The first word start at or before ``candidate`` (but after ``after``)."""
    for i in range(candidate, after, -1):
        if word_starts[i]:
            return i
    return max(candidate, after + 1)  # a word longer than the overlap: cut inside it
