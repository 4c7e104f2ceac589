"""Passages: offsets that slice the content back, model-sized, overlapping."""

from __future__ import annotations

import itertools

import pytest

from ml_worker import chunking
from ml_worker.chunking import (
    PASSAGE_OVERLAP_TOKENS,
    PASSAGE_TOKENS,
    split_passages,
)
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.embedding import load_model


@pytest.fixture(scope="module")
def tokenizer():
    return load_model(ENGLISH_MODEL, "cpu").tokenizer


def _n_tokens(tokenizer, text: str) -> int:
    """Tokens the model reads for ``text``, its own special tokens included."""
    return len(tokenizer(text)["input_ids"])


def _long_text(n_words: int) -> str:
    words = ["ledger", "Panama", "transfer", "unbelievably", "offshore", "2019,", "the"]
    return " ".join(words[i % len(words)] for i in range(n_words))


def _check(content: str, passages, tokenizer, max_tokens: int) -> None:
    for i, p in enumerate(passages):
        assert p.index == i
        assert content[p.start : p.end] == p.text
        assert _n_tokens(tokenizer, p.text) <= max_tokens


@pytest.mark.parametrize("content", ["", " ", "\n\t  \n"])
def test_empty_or_blank_content_has_no_passage(tokenizer, content):
    assert split_passages(content, tokenizer) == []


def test_short_content_is_one_passage_without_surrounding_blanks(tokenizer):
    content = "  The auditor signed the lease in Geneva.\n"
    (passage,) = split_passages(content, tokenizer)
    assert passage.text == "The auditor signed the lease in Geneva."
    assert content[passage.start : passage.end] == passage.text


@pytest.mark.parametrize(
    ("max_tokens", "overlap"),
    [(PASSAGE_TOKENS, PASSAGE_OVERLAP_TOKENS), (64, 8), (32, 0)],
)
def test_long_content_passages_fit_the_model_and_slice_back(
    tokenizer, max_tokens, overlap
):
    content = _long_text(2_000)
    passages = split_passages(
        content, tokenizer, max_tokens=max_tokens, overlap_tokens=overlap
    )

    assert len(passages) > 1
    _check(content, passages, tokenizer, max_tokens)
    assert passages[0].start == 0
    assert passages[-1].end == len(content)


def test_passages_overlap_and_cover_the_content(tokenizer):
    content = _long_text(1_000)
    passages = split_passages(content, tokenizer, max_tokens=64, overlap_tokens=8)

    for previous, passage in itertools.pairwise(passages):
        assert passage.start < previous.end  # overlapping: nothing falls in between
        assert passage.start > previous.start
        shared = content[passage.start : previous.end]
        assert len(tokenizer.tokenize(shared)) >= 4


def test_passages_without_overlap_touch(tokenizer):
    content = _long_text(500)
    passages = split_passages(content, tokenizer, max_tokens=32, overlap_tokens=0)

    for previous, passage in itertools.pairwise(passages):
        assert content[previous.end : passage.start].strip() == ""


def test_passages_start_and_end_on_words(tokenizer):
    content = _long_text(1_000)
    passages = split_passages(content, tokenizer, max_tokens=48, overlap_tokens=8)

    for p in passages:
        assert p.start == 0 or not content[p.start - 1].isalnum()
        assert p.end == len(content) or not content[p.end].isalnum()


def test_unicode_offsets_are_python_string_offsets(tokenizer):
    pieces = [
        "Café naïve façade",
        "日本語のテキスト",
        "Ελληνικά κείμενα",
        "🙂 ok",
        "Łódź",
    ]
    content = " ".join(pieces * 80)
    passages = split_passages(content, tokenizer, max_tokens=32, overlap_tokens=4)

    assert len(passages) > 1
    _check(content, passages, tokenizer, 32)
    assert passages[-1].end == len(content)


def test_a_word_longer_than_a_passage_is_cut_and_still_fits(tokenizer):
    # 90 word pieces (longer words are one unknown token to this tokenizer).
    content = "start " + "x9" * 45 + " end"
    passages = split_passages(content, tokenizer, max_tokens=32, overlap_tokens=4)

    assert len(passages) > 1
    _check(content, passages, tokenizer, 32)
    assert passages[-1].text.endswith("end")


def test_whole_word_passages_skip_the_check_and_come_out_the_same(
    tokenizer, monkeypatch
):
    """WordPiece reads each word alone: its passages of whole words need no check."""
    assert chunking._tokenizes_words_alone(tokenizer)
    pieces = [
        _long_text(300),
        "Café naïve façade, l'été!",
        "日本語のテキスト",
        "🙂 ok",
        "x9" * 60,
        "e-mail: a.b@c.d (2019-03-04)",
        "nul\x00 bell\x07 tab\t",
    ]
    content = " ".join(pieces * 6)
    fast = split_passages(content, tokenizer, max_tokens=64, overlap_tokens=8)
    monkeypatch.setattr(chunking, "_tokenizes_words_alone", lambda _: False)
    checked = split_passages(content, tokenizer, max_tokens=64, overlap_tokens=8)

    assert fast == checked
    _check(content, fast, tokenizer, 64)


@pytest.mark.parametrize("overlap", [-1, 15, 100])
def test_overlap_must_be_less_than_half_a_passage(tokenizer, overlap):
    with pytest.raises(ValueError, match="overlap"):
        split_passages("some text", tokenizer, max_tokens=32, overlap_tokens=overlap)
