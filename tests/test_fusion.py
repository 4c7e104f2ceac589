"""Hybrid fusion of the vector and full-text candidates (scoring.fused_scores)."""

import pytest

from ml_worker.search import (
    HybridEvidence,
    agreement,
    fused_scores,
    hybrid_document_scores,
)
from ml_worker.search.scoring import VECTOR_WEIGHT

SIMILARITIES = {1: 0.9, 2: 0.8, 3: 0.7}
BM25 = {3: 6.0, 4: 3.0}


def _order(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=scores.__getitem__, reverse=True)


@pytest.mark.parametrize("by_agreement", [False, True])
def test_no_full_text_match_leaves_the_vector_order(by_agreement):
    fused = fused_scores(SIMILARITIES, {}, 1.0, by_agreement)
    assert _order(fused) == [1, 2, 3]


@pytest.mark.parametrize("by_agreement", [False, True])
def test_no_vector_candidate_leaves_the_full_text_order(by_agreement):
    fused = fused_scores({}, BM25, 6.0, by_agreement)
    assert _order(fused) == [3, 4]


def test_full_text_matches_weigh_in_by_default():
    # Row 3, the full-text search's best, overtakes the nearest rows.
    assert _order(fused_scores(SIMILARITIES, BM25, 6.0))[0] == 3


def test_full_text_matches_the_vectors_disagree_with_weigh_nothing():
    # A cross-lingual query: BM25's only rows are chance matches, none leading,
    # that the vector search does not rank.
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    chance = {100: 5.0, 101: 5.0}
    fused = fused_scores(nearest, chance, 5.0, by_agreement=True)

    assert _order(fused)[:10] == list(range(10))
    assert fused[100] == pytest.approx(VECTOR_WEIGHT * min(nearest.values()))


def test_full_text_weighs_in_as_far_as_the_rankings_agree():
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    agreeing = {row: 10.0 - row for row in range(5)} | {100: 1.0}
    half = agreement(nearest, agreeing)

    assert half == 0.5
    fused = fused_scores(nearest, agreeing, 10.0, by_agreement=True)
    text_part = fused[0] - VECTOR_WEIGHT * nearest[0]
    assert text_part == pytest.approx((1 - VECTOR_WEIGHT) * half)


def test_a_lone_keyword_weighs_in_though_the_vectors_disagree():
    # One passage has the query's rare word; the vectors rank it nowhere.
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    lone = {100: 8.0, 101: 1.0}
    fused = fused_scores(nearest, lone, 8.0, by_agreement=True)

    assert agreement(nearest, lone) == pytest.approx(1 - 1.0 / 8.0)
    assert _order(fused)[0] == 100


@pytest.mark.parametrize("by_agreement", [False, True])
def test_document_scores_weigh_full_text_as_far_as_the_rankings_agree(by_agreement):
    # Chance matches only (a cross-lingual query): rows 100 and 101, in documents
    # the vector search ranks last, neither leading the other.
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    chance = {100: 5.0, 101: 5.0}
    keys = {row: (f"doc-{row}", 0) for row in [*nearest, *chance]}
    evidence = HybridEvidence(by_agreement=by_agreement)
    evidence.add(nearest, chance, best_bm25=5.0, limit=50)

    scores = hybrid_document_scores(keys, evidence)

    best_chance = max(scores["doc-100"], scores["doc-101"])
    if by_agreement:  # BM25 weighs nothing: the vector order stands
        assert evidence.text_trust == 0.0
        # (a chance match has at most the farthest similarity: doc-9's)
        assert best_chance <= scores["doc-9"]
    else:  # unscaled, the chance matches overtake the vector side's rows
        assert best_chance > scores["doc-9"]
