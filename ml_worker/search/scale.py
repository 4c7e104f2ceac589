"""Scores as a journalist reads them: from 0 to 1, higher is better, in every mode.

The ranking computes a document's score on a scale of its own (``scoring``,
``grouping``): a cosine similarity mapped to [0, 1] (``vector``), a BM25 with no
upper bound (``text``), a standardized mix around 0, about -1 to 2 (``hybrid``),
and under ``weighted_sum`` a sum of halving shares of a document's passages, up to
twice the best one's. Side by side, -0.13 and 1.74 said nothing. Each scale is
mapped to [0, 1] by one increasing function, so the order of documents never
changes, and back (``ranking_threshold``), so that a ``min_score`` given on the
readable scale filters on the ranking's:

| mode, scoring | readable score |
|---|---|
| `vector`, `best_passage` | the score itself: (1 + cosine) / 2 |
| `vector` or `hybrid`, `weighted_sum` | half the sum |
| `text` | BM25 / (BM25 + `BM25_HALF`), with twice `BM25_HALF` for a sum |
| `hybrid`, `best_passage` | the logistic of the standardized score: 0.5 for a document as close as the query's 50 nearest passages on average, 0.73 one spread above |

Scores still compare documents of one query, not across queries or modes.
"""

from __future__ import annotations

import math

from ml_worker.constants import Scoring, SearchMode

# The BM25 a readable text score of 0.5 stands for: a rare word of the query
# found in a short passage (BM25 about 5 in the benchmark sets' passages).
BM25_HALF = 5.0


def readable(score: float, mode: SearchMode, scoring: Scoring) -> float:
    """The ranking's ``score`` on the scale of 0 to 1."""
    if mode is SearchMode.TEXT:
        half = _bm25_half(scoring)
        return max(score, 0.0) / (max(score, 0.0) + half)
    if scoring is Scoring.WEIGHTED_SUM:
        return min(max(score / 2, 0.0), 1.0)
    if mode is SearchMode.HYBRID:
        return 1 / (1 + math.exp(-score))
    return min(max(score, 0.0), 1.0)


def ranking_threshold(score: float, mode: SearchMode, scoring: Scoring) -> float:
    """The ranking's score a readable ``score`` stands for (``readable``'s
    inverse): at or below 0, every document; at or above 1, none."""
    if score <= 0:
        return -math.inf
    if score >= 1:
        return math.inf
    if mode is SearchMode.TEXT:
        return score * _bm25_half(scoring) / (1 - score)
    if scoring is Scoring.WEIGHTED_SUM:
        return 2 * score
    if mode is SearchMode.HYBRID:
        return math.log(score / (1 - score))
    return score


def _bm25_half(scoring: Scoring) -> float:
    return 2 * BM25_HALF if scoring is Scoring.WEIGHTED_SUM else BM25_HALF
