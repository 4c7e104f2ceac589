"""Scores from 0 to 1 in every mode, the ranking's order kept, and back."""

from __future__ import annotations

import math

import pytest

from ml_worker.constants import Scoring, SearchMode
from ml_worker.search.scale import ranking_threshold, readable

pytestmark = pytest.mark.unit

# Scores each ranking gives, from its lowest to beyond its usual highest.
RANKING_SCORES = {
    (SearchMode.VECTOR, Scoring.BEST_PASSAGE): [0.0, 0.3, 0.5, 0.77, 1.0],
    (SearchMode.VECTOR, Scoring.WEIGHTED_SUM): [0.0, 0.4, 1.0, 1.6, 2.0],
    (SearchMode.TEXT, Scoring.BEST_PASSAGE): [0.0, 0.8, 5.0, 17.3, 140.0],
    (SearchMode.TEXT, Scoring.WEIGHTED_SUM): [0.0, 1.2, 10.0, 34.0, 280.0],
    (SearchMode.HYBRID, Scoring.BEST_PASSAGE): [-3.0, -1.0, 0.0, 1.4, 2.5],
    (SearchMode.HYBRID, Scoring.WEIGHTED_SUM): [0.0, 0.5, 0.9, 1.5, 2.0],
}


@pytest.mark.parametrize(("mode", "scoring"), RANKING_SCORES)
def test_readable_scores_run_from_0_to_1_in_the_rankings_order(mode, scoring):
    scores = RANKING_SCORES[mode, scoring]
    shown = [readable(s, mode, scoring) for s in scores]

    assert all(0.0 <= s <= 1.0 for s in shown)
    assert shown == sorted(shown) and len(set(shown)) == len(shown)


@pytest.mark.parametrize(("mode", "scoring"), RANKING_SCORES)
def test_a_readable_threshold_is_the_rankings_own(mode, scoring):
    for score in RANKING_SCORES[mode, scoring]:
        shown = readable(score, mode, scoring)
        if 0.0 < shown < 1.0:
            back = ranking_threshold(shown, mode, scoring)
            assert math.isclose(back, score, rel_tol=1e-9, abs_tol=1e-9)
    assert ranking_threshold(0.0, mode, scoring) == -math.inf
    assert ranking_threshold(1.0, mode, scoring) == math.inf


def test_a_hybrid_score_of_half_is_an_average_candidate():
    assert readable(0.0, SearchMode.HYBRID, Scoring.BEST_PASSAGE) == 0.5
    assert readable(5.0, SearchMode.TEXT, Scoring.BEST_PASSAGE) == 0.5
