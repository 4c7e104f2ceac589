"""Scores of candidate rows and of documents: the fusion of vector and BM25 scores.

In hybrid mode the candidates of both rankings are scored by a linear combination
of their vector similarity and relative BM25 (``fused_scores``); a document's hybrid
score also weighs its first passage (``hybrid_document_scores``). These functions
read no table: they score what retrieval found. The settings below are measured by
bench.quality and bench.scoring_grid (docs/retrieval.md); the grid sets them on
this module.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from ml_worker.constants import SearchMode
from ml_worker.search.retrieval import MIN_PASSAGES

# Share of the vector similarity in a hybrid score, the rest being BM25's divided by
# the query's best BM25. Measured by bench.quality (docs/retrieval.md).
VECTOR_WEIGHT = 0.6
# Rows of each ranking compared to weigh BM25 by the rankings' agreement
# (fused_scores).
AGREEMENT_TOP = 10

# A hybrid document score also weighs its first passage, which says what the
# document is about: the vector side is this share of the first passage's similarity
# plus the rest of the best passage's, the text side likewise with their BM25. The
# vector side is standardized by the query's SCALE_PASSAGES nearest passages (minus
# their mean similarity, over their standard deviation), so that its weight depends
# less on how spread a model's similarities are; a spread below MIN_SPREAD counts as
# MIN_SPREAD. The score is DOCUMENT_VECTOR_WEIGHT of the standardized vector side (a
# few units wide) plus the rest of the text side (0 to 1). Chosen on five known-item
# sets and three sets of one-word queries together (docs/retrieval.md).
FIRST_PASSAGE_VECTOR_SHARE = 0.6
FIRST_PASSAGE_TEXT_SHARE = 0.2
DOCUMENT_VECTOR_WEIGHT = 0.13
# Every first round has as many nearest passages: the scale, hence a document's
# score, does not depend on n_similar.
SCALE_PASSAGES = MIN_PASSAGES
# The standard deviation of a query's 50 nearest similarities: median 0.053 to 0.063
# with MiniLM on the English sets, 0.011 with multilingual-e5. Scaled by e5's own,
# a similarity 0.01 higher outweighed a word only one document has: one-word
# queries fell from MRR@10 0.761 to 0.382. With this floor and the settings above:
# 0.768, and English queries for documents in other languages 0.811 (0.771 with
# raw similarities and the earlier settings).
MIN_SPREAD = 0.05


@dataclass
class HybridEvidence:
    """What a hybrid search's rounds learnt of their candidate rows, by row id."""

    # Each row's similarity: exact for the nearest passages, for a full-text
    # candidate the farthest of its round's nearest passages, the most it can have.
    similarities: dict[int, float] = field(default_factory=dict)
    text: dict[int, float] = field(default_factory=dict)  # BM25 / the query's best
    # The most a candidate row's text score can be when its round's full-text
    # search did not return it: the lowest the round returned, if the list was
    # full, else 0. Counted as 0, a passage the vector search found but BM25 did
    # not seemed not to have the query's words at all: stdlib's known items fell
    # from MRR@10 0.596 to 0.589, the multilingual set's from 0.877 to 0.865
    # (docs/retrieval.md).
    text_floor: dict[int, float] = field(default_factory=dict)
    first: dict[str, float] = field(default_factory=dict)  # by document
    # For a model whose vectors match across languages, BM25's side is scaled by
    # how far its first round agrees with the vectors' (agreement, as in
    # fused_scores): unscaled, English queries for documents in other languages
    # fell from 0.736 to 0.662 MRR@10 with the multilingual model
    # (docs/retrieval.md).
    by_agreement: bool = False
    text_trust: float = 1.0
    # The vector side's scale: the mean similarity of the first round's
    # SCALE_PASSAGES nearest passages, and their standard deviation (at least
    # MIN_SPREAD).
    similarity_mean: float = 0.0
    similarity_spread: float = 1.0

    def add(self, similarities, bm25, best_bm25: float, limit: int) -> None:
        """A round's candidates: ``limit`` is the length of its full lists."""
        if not self.similarities:  # the first round
            if self.by_agreement:
                self.text_trust = agreement(similarities, bm25)
            nearest = sorted(similarities.values(), reverse=True)[:SCALE_PASSAGES]
            if nearest:
                self.similarity_mean = statistics.fmean(nearest)
                self.similarity_spread = max(statistics.pstdev(nearest), MIN_SPREAD)
        floor = min(similarities.values(), default=0.0)
        self.similarities.update((row, floor) for row in bm25)
        self.similarities.update(similarities)
        text = {row: score / best_bm25 for row, score in bm25.items()}
        # A full list left out rows scoring up to its lowest; a shorter one, none.
        text_floor = min(text.values()) if len(text) >= limit else 0.0
        self.text_floor.update(
            (row, text_floor) for row in similarities.keys() | text.keys()
        )
        self.text.update(text)

    def vector_side(self, similarity: float) -> float:
        """A document's vector side (a similarity), standardized."""
        return (similarity - self.similarity_mean) / self.similarity_spread

    def score(self, vector: float, text: float) -> float:
        """A document's hybrid score, from its vector side (a similarity) and its
        text side (a BM25 over the query's best)."""
        w = DOCUMENT_VECTOR_WEIGHT
        return w * self.vector_side(vector) + (1 - w) * self.text_trust * text


def hybrid_document_scores(
    keys: dict[int, tuple[str, int]], evidence: HybridEvidence
) -> dict[str, float]:
    """Each document's hybrid score, from its candidate rows (``keys``: each row's
    document and passage number) and its first passage's similarity.

    Best-passage scoring lost to whole documents embedded as one vector on long
    documents: other documents' many passages give many chances of a near miss,
    while a document's beginning says what it is about. So each side mixes the
    first passage's score (FIRST_PASSAGE_*_SHARE) with the best passage's. A BM25
    the full-text search did not return counts as the most it can be (the
    evidence's ``text_floor``), as a similarity the vector search did not return.
    """
    best_sim: dict[str, float] = {}
    best_text: dict[str, float] = {}
    first_text: dict[str, float] = {}
    text_floor: dict[str, float] = {}  # a document's rows are all of one round
    for row, (doc, passage) in keys.items():
        best_sim[doc] = max(best_sim.get(doc, -1.0), evidence.similarities[row])
        text_floor[doc] = evidence.text_floor.get(row, 0.0)
        text = evidence.text.get(row, text_floor[doc])
        best_text[doc] = max(best_text.get(doc, 0.0), text)
        if passage == 0:
            first_text[doc] = text
    a, b = FIRST_PASSAGE_VECTOR_SHARE, FIRST_PASSAGE_TEXT_SHARE
    return {
        doc: evidence.score(
            a * evidence.first.get(doc, best) + (1 - a) * best,
            b * first_text.get(doc, text_floor[doc]) + (1 - b) * best_text[doc],
        )
        for doc, best in best_sim.items()
    }


def passage_scores(
    similarities: dict[int, float] | None,
    bm25: dict[int, float] | None,
    mode: SearchMode,
    best_bm25: float,
    by_agreement: bool = False,
) -> dict[int, float]:
    """The candidate rows' scores in a search mode, by row id: the vector mode's
    similarity mapped to [0, 1], the text mode's BM25, the hybrid mode's
    ``fused_scores``. A mode's own rankings are never None."""
    if mode is SearchMode.TEXT:
        assert bm25 is not None
        return bm25
    assert similarities is not None
    if mode is SearchMode.VECTOR:
        return {row: (1.0 + s) / 2 for row, s in similarities.items()}  # in [0, 1]
    assert bm25 is not None
    return fused_scores(similarities, bm25, best_bm25, by_agreement)


def fused_scores(
    similarities: dict[int, float],
    bm25: dict[int, float],
    best_bm25: float,
    by_agreement: bool = False,
) -> dict[int, float]:
    """Vector and full-text candidates, scored by a linear combination.

    LanceDB's hybrid query min-max normalizes each list, which zeroes a list of one:
    a rare keyword found in a single passage would weigh nothing. Here BM25 is
    divided by the query's best BM25. A full-text candidate that is not among the
    nearest rows is given the similarity of the farthest of them, the most it can
    have: reading its vector would cost more than it changes (bench.quality).
    Either side empty, the order is the other side's.

    ``by_agreement``, for a model whose vectors match across languages: BM25's
    share is scaled by how far its ranking agrees with the vectors' (see
    ``agreement``). An English query for a German document shares few words
    with it, and BM25's best rows are then other documents' chance matches: with
    the multilingual model on the Debian descriptions set, MRR@10 of English
    queries went from 0.637 to 0.736 (vector alone: 0.765), of queries in the
    document's language from 0.905 to 0.929. Not for an English model on other
    languages, whose weak vectors would silence a BM25 that is right: 0.914 fell
    to 0.787 there (docs/retrieval.md).
    """
    floor = min(similarities.values(), default=0.0)
    text_weight = 1 - VECTOR_WEIGHT
    if by_agreement:
        text_weight *= agreement(similarities, bm25)
    return {
        row: VECTOR_WEIGHT * similarities.get(row, floor)
        + text_weight * bm25.get(row, 0.0) / best_bm25
        for row in similarities.keys() | bm25.keys()
    }


def agreement(similarities: dict[int, float], bm25: dict[int, float]) -> float:
    """How far BM25 is to be trusted: the share of its best rows among the vector
    search's, or its best row's lead over the next (1 - second / best), if higher.
    A lone keyword (a name, a number) leads by far in the one passage that has it,
    where the vectors may rank it nowhere: one-word queries of a word only one
    document has scored MRR@10 0.505 by agreement alone, 0.807 with the lead
    (0.694 with the lead squared), 0.840 by BM25 alone."""
    nearest, best = (
        sorted(scores, key=scores.__getitem__, reverse=True)[:AGREEMENT_TOP]
        for scores in (similarities, bm25)
    )
    shared = len(set(nearest) & set(best)) / AGREEMENT_TOP
    if not best:
        return shared
    second = bm25[best[1]] if len(best) > 1 else 0.0
    lead = 1 - second / bm25[best[0]] if bm25[best[0]] > 0 else 0.0
    return max(shared, lead)


def score_ceiling(
    similarities: dict[int, float] | None,
    bm25: dict[int, float] | None,
    mode: SearchMode,
    limit: int,
    best_bm25: float,
    evidence: HybridEvidence | None = None,
) -> float | None:
    """The highest score a row outside these candidates can have, or None when
    every row the search can find is among them (a list shorter than ``limit``).
    With ``evidence``, the highest hybrid_document_scores a document without
    candidate rows can have. A mode's own rankings are never None."""
    if mode is SearchMode.TEXT:
        assert bm25 is not None
        return min(bm25.values()) if len(bm25) == limit else None
    assert similarities is not None
    # The vector search finds every row: short, it left none out.
    if len(similarities) < limit:
        return None
    floor = min(similarities.values())
    if mode is SearchMode.VECTOR:
        return (1.0 + floor) / 2
    assert bm25 is not None
    text_floor = min(bm25.values()) / best_bm25 if len(bm25) == limit else 0.0
    if evidence is not None:
        # Its first and best passages are at most as near, their BM25 as high.
        return evidence.score(floor, text_floor)
    return VECTOR_WEIGHT * floor + (1 - VECTOR_WEIGHT) * text_floor
