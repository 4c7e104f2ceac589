"""Hybrid fusion of the vector and full-text candidates (search._fused)."""

import pytest

from ml_worker import search

SIMILARITIES = {1: 0.9, 2: 0.8, 3: 0.7}
BM25 = {3: 6.0, 4: 3.0}


def _order(scores: dict[int, float]) -> list[int]:
    return sorted(scores, key=scores.__getitem__, reverse=True)


@pytest.mark.parametrize("by_agreement", [False, True])
def test_no_full_text_match_leaves_the_vector_order(by_agreement):
    fused = search._fused(SIMILARITIES, {}, 1.0, by_agreement)
    assert _order(fused) == [1, 2, 3]


@pytest.mark.parametrize("by_agreement", [False, True])
def test_no_vector_candidate_leaves_the_full_text_order(by_agreement):
    fused = search._fused({}, BM25, 6.0, by_agreement)
    assert _order(fused) == [3, 4]


def test_full_text_matches_weigh_in_by_default():
    # Row 3, the full-text search's best, overtakes the nearest rows.
    assert _order(search._fused(SIMILARITIES, BM25, 6.0))[0] == 3


def test_full_text_matches_the_vectors_disagree_with_weigh_nothing():
    # A cross-lingual query: BM25's only rows are chance matches, none leading,
    # that the vector search does not rank.
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    chance = {100: 5.0, 101: 5.0}
    fused = search._fused(nearest, chance, 5.0, by_agreement=True)

    assert _order(fused)[:10] == list(range(10))
    assert fused[100] == pytest.approx(search.VECTOR_WEIGHT * min(nearest.values()))


def test_full_text_weighs_in_as_far_as_the_rankings_agree():
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    agreeing = {row: 10.0 - row for row in range(5)} | {100: 1.0}
    half = search._agreement(nearest, agreeing)

    assert half == 0.5
    fused = search._fused(nearest, agreeing, 10.0, by_agreement=True)
    text_part = fused[0] - search.VECTOR_WEIGHT * nearest[0]
    assert text_part == pytest.approx((1 - search.VECTOR_WEIGHT) * half)


def test_a_lone_keyword_weighs_in_though_the_vectors_disagree():
    # One passage has the query's rare word; the vectors rank it nowhere.
    nearest = {row: 0.9 - row / 100 for row in range(10)}
    lone = {100: 8.0, 101: 1.0}
    fused = search._fused(nearest, lone, 8.0, by_agreement=True)

    assert search._agreement(nearest, lone) == pytest.approx(1 - 1.0 / 8.0)
    assert _order(fused)[0] == 100
