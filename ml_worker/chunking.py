"""Splitting a document's content into passages the model reads whole.

An embedding model reads at most ``max_seq_length`` tokens and silently drops the
rest, so a long document embedded as one vector is invisible past its first page.
Passages are cut in the model's own tokens, overlap so that a sentence on a boundary
is whole in one of them, and start on a word so that re-tokenizing a passage gives
back the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

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
    max_tokens: int,
    overlap_tokens: int,
) -> list[Passage]:
    """The passages of ``content``, each at most ``max_tokens`` model tokens long."""
    window = max_tokens - _SPECIAL_TOKENS_MARGIN
    if not 0 <= overlap_tokens < window // 2:
        raise ValueError(f"overlap must be in [0, {window // 2}), got {overlap_tokens}")
    encoding = tokenizer(
        content,
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        verbose=False,
    )
    offsets = encoding["offset_mapping"]
    word_starts = _word_start_tokens(encoding.word_ids(), len(offsets))
    passages = []
    first = 0
    while first < len(offsets):
        last = min(first + window, len(offsets))
        start, end = offsets[first][0], offsets[last - 1][1]
        passages.append(Passage(len(passages), start, end, content[start:end]))
        if last == len(offsets):
            break
        first = _next_word_start(word_starts, last - overlap_tokens, after=first)
    return passages


def _word_start_tokens(word_ids: list[int | None], n_tokens: int) -> list[bool]:
    starts, previous = [], None
    for i in range(n_tokens):
        starts.append(word_ids[i] is None or word_ids[i] != previous)
        previous = word_ids[i]
    return starts


def _next_word_start(word_starts: list[bool], candidate: int, *, after: int) -> int:
    """The first word start at or before ``candidate`` (but after ``after``)."""
    for i in range(candidate, after, -1):
        if word_starts[i]:
            return i
    return candidate  # one word longer than the overlap: cut inside it
