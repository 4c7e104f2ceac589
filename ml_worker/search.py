"""Hybrid (vector + full-text) search over a project's passages, ranked by document.

Each query asks LanceDB for the best passages by vector similarity and by BM25 over
``content``; in hybrid mode the candidates of both are scored by a linear combination
of their vector similarity and relative BM25. Filters are SQL conditions LanceDB
applies before ranking, so a filtered search returns the best matching documents,
not a filtered short list.
Ranking reads only row ids and scores; a row's fields are read once it is among the
best. Passages are then grouped into documents: ``n_similar`` counts documents, each
with its best passage as a snippet. When a few documents' passages took every place,
a next round of candidates excludes them (``_Search``). The settings below are
measured by bench.quality (docs/retrieval.md).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lancedb.table import Table

from ml_worker.constants import Scoring, SearchMode
from ml_worker.store import (
    CONTENT,
    CONTENT_HASH,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
    PASSAGE_COLUMNS,
    sql_string,
    table_embedder,
)

# Passages fetched per requested document: several passages of one document often
# fill the top of the list, and grouping must still yield n_similar documents
# without a second round of candidates.
PASSAGES_PER_DOC = 5
_MIN_PASSAGES = 50

# Share of the vector similarity in a hybrid score, the rest being BM25's divided by
# the query's best BM25. Measured by bench.quality (docs/retrieval.md).
VECTOR_WEIGHT = 0.6
# Rows of each ranking compared to weigh BM25 by the rankings' agreement (_fused).
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
SCALE_PASSAGES = _MIN_PASSAGES
# The standard deviation of a query's 50 nearest similarities: median 0.053 to 0.063
# with MiniLM on the English sets, 0.011 with multilingual-e5. Scaled by e5's own,
# a similarity 0.01 higher outweighed a word only one document has: one-word
# queries fell from MRR@10 0.761 to 0.382. With this floor and the settings above:
# 0.768, and English queries for documents in other languages 0.811 (0.771 with
# raw similarities and the earlier settings).
MIN_SPREAD = 0.05

# Rows without text (documents with no content) have no passage to find.
_PASSAGES_ONLY = f"{PASSAGE} >= 0"

# Rounds of candidates a search may ask for (see _Search): each later one cost 5 to
# 10 ms on a million passages (docs/retrieval.md), and four get past three documents
# that each fill a round's candidates.
MAX_ROUNDS = 4

_ROW_ID = "_rowid"
# What tells the documents of candidate rows apart.
_KEYS = [DOC_ID, PASSAGE]

# The columns of a passage a result shows (see _hit).
_RESULT_FIELDS = [c for c in PASSAGE_COLUMNS if c not in ("tags", CONTENT_HASH)]


@dataclass(frozen=True)
class VectorSearch:
    """How many IVF partitions a query visits, and how many candidates per result
    are re-ranked on their full vectors (tuned by bench.search_latency)."""

    # 30 of 500 partitions at a million rows: recall@10 0.995 in 8 ms with 4-bit
    # codes (1-bit codes needed 5 candidates per result for 0.979; 8-bit scalar
    # quantization 100 partitions and 60 ms for 0.967). One candidate per result
    # still re-reads its full vector: hybrid scoring relies on exact similarities.
    nprobes: int = 30
    refine_factor: int = 1


VECTOR_SEARCH = VectorSearch()


def tuned(builder):
    """A vector or hybrid LanceDB query, with the recall settings of the index."""
    return builder.nprobes(VECTOR_SEARCH.nprobes).refine_factor(
        VECTOR_SEARCH.refine_factor
    )


@dataclass(frozen=True)
class Filters:
    """Which documents a search may return; unset fields do not filter."""

    languages: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    path_prefix: str | None = None
    tags: tuple[str, ...] = ()  # documents with any of these tags

    @classmethod
    def of(
        cls,
        *,
        languages: list[str] | str | None = None,
        content_types: list[str] | str | None = None,
        path_prefix: str | None = None,
        tags: list[str] | str | None = None,
    ) -> Filters:
        """Filters from task arguments (checked by the task): each list may also be
        a single string."""
        return cls(
            languages=_strings(languages),
            content_types=_strings(content_types),
            path_prefix=path_prefix or None,
            tags=_strings(tags),
        )

    def sql(self) -> str | None:
        """The LanceDB (DataFusion SQL) condition of these filters."""
        conditions = []
        if self.languages:
            conditions.append(f"language IN ({_sql_list(self.languages)})")
        if self.content_types:
            conditions.append(f"content_type IN ({_sql_list(self.content_types)})")
        if self.path_prefix:
            conditions.append(f"starts_with(path, {sql_string(self.path_prefix)})")
        if self.tags:
            conditions.append(f"array_has_any(tags, [{_sql_list(self.tags)}])")
        return " AND ".join(conditions) or None


def _strings(value: list[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(sql_string(v) for v in values)


def search_queries(
    table: Table,
    queries: list[str],
    *,
    mode: SearchMode,
    n_similar: int,
    scoring: Scoring = Scoring.BEST_PASSAGE,
    where: str | None = None,
    min_score: float | None = None,
    vectors: list | None = None,
) -> list[list[dict]]:
    """For each query, its ``n_similar`` best documents as results, best first.

    ``where``: a SQL condition on the table's columns, applied before ranking.
    ``min_score`` leaves out documents scoring below it. ``vectors``: the queries'
    vectors, when the caller has them; the table's embedding function computes them
    otherwise. The full-text searches run while the model embeds the queries, so a
    search waits for the slower of the two, not for both.
    """
    limit = passages_limit(n_similar)
    n = len(queries)
    with ThreadPoolExecutor(max_workers=1) as pool:
        by_text = None
        if mode is not SearchMode.VECTOR:
            by_text = pool.submit(
                lambda: [_by_text(table, q, limit, where) for q in queries]
            )
        if vectors is None and mode is not SearchMode.TEXT:
            vectors = table_embedder(table).compute_query_embeddings(queries)
        text_scores = by_text.result() if by_text is not None else [None] * n
    if vectors is None:
        vectors = [None] * n
    search = _Search(
        table,
        by_agreement=table_embedder(table).crosses_languages,
        mode=mode,
        limit=limit,
        where=where,
        n_similar=n_similar,
        scoring=scoring,
        min_score=min_score,
    )
    return [
        search.documents(query, vector, bm25)
        for query, vector, bm25 in zip(queries, vectors, text_scores, strict=False)
    ]


@dataclass(frozen=True)
class _Search:
    """How one search call finds each query's documents, in rounds of candidates.

    A round ranks ``limit`` passages by each ranking and groups them by document.
    When that leaves fewer than ``n_similar`` documents although the candidate
    lists were full, a few passages took every place: the passages of one long
    document of near-identical pages, or rows of documents without text. The next
    round then asks again, excluding the documents already found (a ``doc_id NOT IN``
    condition, answered by the doc_id index) and, when some were found, documents
    without text. Each round finds at least one more document, and there are at
    most ``MAX_ROUNDS``: a search stays bounded.
    """

    table: Table
    by_agreement: bool  # see _fused
    mode: SearchMode
    limit: int
    where: str | None
    n_similar: int
    scoring: Scoring
    min_score: float | None

    def documents(self, query: str, vector, bm25: dict | None) -> list[dict]:
        """The query's results, given its vector and its first full-text scores."""
        # Scores of later rounds stay relative to the query's best BM25 overall.
        best_bm25 = max((bm25 or {}).values(), default=0.0) or 1.0
        scores: dict[int, float] = {}
        read: dict[int, dict] = {}  # the fields read so far, by row id
        condition = self.where
        ranked: list[tuple[int, float]] = []
        hits: list[dict] = []
        # What a document-level view of hybrid results needs (hybrid_document_scores).
        evidence = None
        if self.mode is SearchMode.HYBRID and self.scoring is Scoring.BEST_PASSAGE:
            evidence = HybridEvidence(by_agreement=self.by_agreement)
        for round_ in range(MAX_ROUNDS):
            if round_:
                condition = self._excluding(ranked, read)
            similarities = None
            if self.mode is not SearchMode.TEXT:
                similarities = nearest_passages(
                    self.table, vector, self.limit, condition
                )
            if round_ and bm25 is not None:
                bm25 = self._next_text_scores(query, bm25, condition)
            scores.update(
                _ranked(similarities, bm25, self.mode, best_bm25, self.by_agreement)
            )
            ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
            if evidence is not None:
                assert similarities is not None and bm25 is not None
                evidence.add(similarities, bm25, best_bm25, self.limit)
                hits = self._hybrid_documents(ranked, read, evidence, vector)
            else:
                hits = self._documents(ranked, read)
            if len(hits) >= self.n_similar:
                break
            if not self._more(similarities, bm25, best_bm25, evidence):
                break
        return hits

    def _next_text_scores(
        self, query: str, previous: dict[int, float], condition: str | None
    ) -> dict[int, float]:
        """The BM25 scores of a next round, at most the previous round's lowest.

        Where the full-text index does not cover the rows (a small project's, the
        latest ones), LanceDB weighs a word by its frequency among the rows the
        condition leaves: excluding a document of 2,000 near-identical passages made
        its words rare, and the next round's best BM25 rose from 0.09 to 3.5. These
        rows rank below the previous round's, by the first round's weights: their
        scores are scaled down, their order kept. Where the index covers them, the
        weights do not change, nor the scores.
        """
        if len(previous) < self.limit:
            return {}  # the previous list held every row the full-text search finds
        scores = _by_text(self.table, query, self.limit, condition)
        ceiling, best = min(previous.values()), max(scores.values(), default=0.0)
        if best <= ceiling:
            return scores
        return {row: score * ceiling / best for row, score in scores.items()}

    def _more(
        self, similarities, bm25, best_bm25: float, evidence: HybridEvidence | None
    ) -> bool:
        """Whether rows outside these candidates may still make a result."""
        ceiling = _ceiling(
            similarities, bm25, self.mode, self.limit, best_bm25, evidence
        )
        if ceiling is None:
            return False
        if self.min_score is None:
            return True
        if self.scoring is Scoring.WEIGHTED_SUM:
            ceiling = max(ceiling, 2 * ceiling)  # 1 + 1/2 + 1/4... of the best passage
        return ceiling >= self.min_score

    def _excluding(self, ranked: list[tuple[int, float]], read: dict[int, dict]) -> str:
        """The condition of a next round: none of the documents of ``ranked``."""
        _read(self.table, [row for row, _ in ranked], read, _KEYS)
        rows = [read[row] for row, _ in ranked]
        blank = [r[PASSAGE] == NO_TEXT_PASSAGE for r in rows]
        found = tuple(
            sorted({r[DOC_ID] for r, b in zip(rows, blank, strict=False) if not b})
        )
        conditions = [f"{DOC_ID} NOT IN ({_sql_list(found)})"] if found else []
        if any(blank):
            # Documents without text are many rows, often of one vector: a condition
            # excludes them all, at the cost of a scan (see nearest_passages).
            conditions.append(_PASSAGES_ONLY)
        if self.where:
            conditions.append(f"({self.where})")
        return " AND ".join(conditions)

    def _documents(
        self, ranked: list[tuple[int, float]], read: dict[int, dict]
    ) -> list[dict]:
        """The results of the best documents of ranked rows.

        Reading a row's fields costs a read per row and column. Under
        ``BEST_PASSAGE`` the first ``n_similar`` rows are read whole, and they are
        usually ``n_similar`` documents, a document's first row being its best.
        Otherwise the document of each row is read, then the whole best rows.
        """
        grouping: dict[str, Any] = {
            "n_similar": self.n_similar,
            "scoring": self.scoring,
            "min_score": self.min_score,
        }
        if self.scoring is Scoring.BEST_PASSAGE:
            head = ranked[: self.n_similar]
            _read(self.table, [row for row, _ in head], read, _RESULT_FIELDS)
            best = group_by_document(_passages(head, read), **grouping)
            # The rows past the first ones score less than min_score, or are none.
            done = len(head) == len(ranked) or (
                self.min_score is not None and head[-1][1] < self.min_score
            )
            if len(best) == self.n_similar or done:
                return [_hit(passage) for passage in best]
        _read(self.table, [row for row, _ in ranked], read, _KEYS)
        best = group_by_document(_passages(ranked, read), **grouping)
        _read(self.table, [p[_ROW_ID] for p in best], read, _RESULT_FIELDS)
        return [_hit({**read[p[_ROW_ID]], "score": p["score"]}) for p in best]

    def _hybrid_documents(
        self,
        ranked: list[tuple[int, float]],
        read: dict[int, dict],
        evidence: HybridEvidence,
        vector,
    ) -> list[dict]:
        """The results of the best documents by hybrid_document_scores, each with
        its best passage (by the passages' own scores) as snippet."""
        rows = [row for row, _ in ranked]
        _read(self.table, rows, read, _KEYS)
        best_row: dict[str, int] = {}
        for row in rows:
            if read[row][PASSAGE] != NO_TEXT_PASSAGE:
                best_row.setdefault(read[row][DOC_ID], row)
        keys = {
            row: (read[row][DOC_ID], read[row][PASSAGE])
            for row in rows
            if read[row][PASSAGE] != NO_TEXT_PASSAGE
        }
        unseen = {doc for doc, _ in keys.values()} - evidence.first.keys()
        evidence.first.update(first_passage_similarities(self.table, vector, unseen))
        scores = hybrid_document_scores(keys, evidence)
        docs = sorted(scores, key=scores.__getitem__, reverse=True)
        if self.min_score is not None:
            docs = [doc for doc in docs if scores[doc] >= self.min_score]
        best = [best_row[doc] for doc in docs[: self.n_similar]]
        _read(self.table, best, read, _RESULT_FIELDS)
        return [_hit({**read[row], "score": scores[read[row][DOC_ID]]}) for row in best]


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
    # how far its first round agrees with the vectors' (_agreement, as in _fused):
    # unscaled, English queries for documents in other languages fell from 0.736 to
    # 0.662 MRR@10 with the multilingual model (docs/retrieval.md).
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
                self.text_trust = _agreement(similarities, bm25)
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


def first_passage_similarities(
    table: Table, query_vector, doc_ids: set[str]
) -> dict[str, float]:
    """The cosine similarity to the query of these documents' first passages.

    An exact search over these rows alone (a prefilter on the doc_id index): an
    indexed search would miss the rows of partitions it does not probe.
    """
    if not doc_ids:
        return {}
    builder = table.search(query_vector, query_type="vector")
    builder = builder.distance_type("cosine").bypass_vector_index()  # type: ignore[attr-defined]
    condition = f"{DOC_ID} IN ({_sql_list(tuple(sorted(doc_ids)))}) AND {PASSAGE} = 0"
    rows = (
        builder.where(condition, prefilter=True)
        .select([DOC_ID, "_distance"])
        .limit(len(doc_ids))
        .to_arrow()
    )
    return {
        doc: 1.0 - distance
        for doc, distance in zip(
            rows[DOC_ID].to_pylist(), rows["_distance"].to_pylist(), strict=True
        )
    }


def _passages(ranked: list[tuple[int, float]], read: dict[int, dict]) -> list[dict]:
    """The ranked rows of documents with text, with their row id and score."""
    return [
        {**read[row], _ROW_ID: row, "score": score}
        for row, score in ranked
        if read[row][PASSAGE] != NO_TEXT_PASSAGE
    ]


def _read(table: Table, row_ids: list[int], read: dict[int, dict], fields) -> None:
    """Read ``fields`` of the rows that lack some of them into ``read``."""
    missing = [row for row in row_ids if not read.get(row, {}).keys() >= set(fields)]
    if missing:
        rows = table.take_row_ids(missing).with_row_id().select(fields).to_list()
        for row in rows:
            read[row.pop(_ROW_ID)] = row


def nearest_passages(
    table: Table, query_vector, limit: int, where: str | None = None
) -> dict[int, float]:
    """The cosine similarity to the query of its ``limit`` nearest rows, by row id.

    Only row ids and similarities are read: a result's fields are read for the few
    rows that make it to the results. The nearest rows may include those of
    documents without text (NO_TEXT_PASSAGE), which are dropped from the results:
    excluding them by a condition would cost a scan of the table per query, as it
    matches nearly every row, so only a search whose candidates they crowded out
    asks again without them.
    """
    builder = table.search(query_vector, query_type="vector")
    builder = builder.distance_type("cosine")  # type: ignore[attr-defined]
    distances = _scores_by_row(tuned(builder), "_distance", limit, where)
    # Exact: the index re-ranks its candidates on their full vectors.
    return {row: 1.0 - distance for row, distance in distances.items()}


def _by_text(table: Table, query: str, limit: int, where: str | None):
    """The BM25 scores of the query's ``limit`` best rows, by row id."""
    builder = table.search(query, query_type="fts", fts_columns=CONTENT)
    return _scores_by_row(builder, "_score", limit, where)


def _scores_by_row(builder, score: str, limit: int, where: str | None) -> dict:
    """The ``score`` column of the query's ``limit`` best rows, by row id."""
    builder = builder.with_row_id(True)
    if where is not None:
        builder = builder.where(where, prefilter=True)
    rows = builder.select([score]).limit(limit).to_arrow()
    return dict(zip(rows[_ROW_ID].to_pylist(), rows[score].to_pylist(), strict=False))


def _ranked(
    similarities: dict[int, float] | None,
    bm25: dict[int, float] | None,
    mode: SearchMode,
    best_bm25: float,
    by_agreement: bool = False,
) -> dict[int, float]:
    """The rows' scores, by row id. A mode's own rankings are never None."""
    if mode is SearchMode.TEXT:
        assert bm25 is not None
        return bm25
    assert similarities is not None
    if mode is SearchMode.VECTOR:
        return {row: (1.0 + s) / 2 for row, s in similarities.items()}  # in [0, 1]
    assert bm25 is not None
    return _fused(similarities, bm25, best_bm25, by_agreement)


def _fused(
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
    ``_agreement``). An English query for a German document shares few words
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
        text_weight *= _agreement(similarities, bm25)
    return {
        row: VECTOR_WEIGHT * similarities.get(row, floor)
        + text_weight * bm25.get(row, 0.0) / best_bm25
        for row in similarities.keys() | bm25.keys()
    }


def _agreement(similarities: dict[int, float], bm25: dict[int, float]) -> float:
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


def _ceiling(
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


def group_by_document(
    passages: list[dict],
    *,
    n_similar: int,
    scoring: Scoring,
    min_score: float | None = None,
) -> list[dict]:
    """The best documents, each as its best passage with the document's ``score``.

    ``min_score`` leaves out documents scoring below it.
    """
    by_doc: dict[str, list[dict]] = defaultdict(list)
    for passage in passages:
        by_doc[passage[DOC_ID]].append(passage)
    ranked = []
    for doc_passages in by_doc.values():
        doc_passages.sort(key=lambda p: p["score"], reverse=True)
        best = doc_passages[0]
        if scoring is Scoring.WEIGHTED_SUM:
            score = sum(p["score"] / 2**i for i, p in enumerate(doc_passages))
        else:
            score = best["score"]
        if min_score is None or score >= min_score:
            ranked.append({**best, "score": score})
    ranked.sort(key=lambda h: h["score"], reverse=True)
    return ranked[:n_similar]


def _hit(best: dict) -> dict:
    """A result: the document's fields, its score and its best passage as a snippet."""
    return {
        "doc_id": best[DOC_ID],
        "root_id": best["root_id"],
        "score": best["score"],
        "snippet": best[CONTENT],
        "snippet_start": best["start"],
        "snippet_end": best["end"],
        "path": best["path"],
        "title": best["title"],
        "content_type": best["content_type"],
        "language": best["language"],
    }


def passages_limit(n_similar: int) -> int:
    return max(n_similar * PASSAGES_PER_DOC, _MIN_PASSAGES)
