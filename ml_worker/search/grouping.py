"""A search's documents: passages ranked in rounds of candidates, grouped by document.

``search_queries`` answers queries: each round asks retrieval for the best passages
by vector similarity and by BM25, scores them (``scoring``), then groups them into
documents: ``n_similar`` counts documents, each with its best passage as a snippet.
When a few documents' passages took every place, a next round of candidates
excludes them (``_Search``). The settings below are measured by bench.quality
(docs/retrieval.md).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lancedb.table import Table

from ml_worker.constants import Scoring, SearchMode
from ml_worker.search.filters import PASSAGES_ONLY, sql_list
from ml_worker.search.retrieval import (
    ROW_ID,
    first_passage_similarities,
    nearest_passages,
    passages_limit,
    read_rows,
    text_scores,
)
from ml_worker.search.scoring import (
    HybridEvidence,
    hybrid_document_scores,
    passage_scores,
    score_ceiling,
)
from ml_worker.store import (
    CONTENT,
    CONTENT_HASH,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
    PASSAGE_COLUMNS,
    table_embedder,
)

# Rounds of candidates a search may ask for (see _Search): each later one cost 5 to
# 10 ms on a million passages (docs/retrieval.md), and four get past three documents
# that each fill a round's candidates.
MAX_ROUNDS = 4

# What tells the documents of candidate rows apart.
_KEYS = [DOC_ID, PASSAGE]

# The columns of a passage a result shows (see document_hit).
RESULT_FIELDS = [c for c in PASSAGE_COLUMNS if c not in ("tags", CONTENT_HASH)]


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
                lambda: [text_scores(table, q, limit, where) for q in queries]
            )
        if vectors is None and mode is not SearchMode.TEXT:
            vectors = table_embedder(table).compute_query_embeddings(queries)
        first_bm25 = by_text.result() if by_text is not None else [None] * n
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
        for query, vector, bm25 in zip(queries, vectors, first_bm25, strict=False)
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
    by_agreement: bool  # see fused_scores
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
                passage_scores(
                    similarities, bm25, self.mode, best_bm25, self.by_agreement
                )
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
        scores = text_scores(self.table, query, self.limit, condition)
        ceiling, best = min(previous.values()), max(scores.values(), default=0.0)
        if best <= ceiling:
            return scores
        return {row: score * ceiling / best for row, score in scores.items()}

    def _more(
        self, similarities, bm25, best_bm25: float, evidence: HybridEvidence | None
    ) -> bool:
        """Whether rows outside these candidates may still make a result."""
        ceiling = score_ceiling(
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
        read_rows(self.table, [row for row, _ in ranked], read, _KEYS)
        rows = [read[row] for row, _ in ranked]
        blank = [r[PASSAGE] == NO_TEXT_PASSAGE for r in rows]
        found = tuple(
            sorted({r[DOC_ID] for r, b in zip(rows, blank, strict=False) if not b})
        )
        conditions = [f"{DOC_ID} NOT IN ({sql_list(found)})"] if found else []
        if any(blank):
            # Documents without text are many rows, often of one vector: a condition
            # excludes them all, at the cost of a scan (see nearest_passages).
            conditions.append(PASSAGES_ONLY)
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
            read_rows(self.table, [row for row, _ in head], read, RESULT_FIELDS)
            best = group_by_document(_passages(head, read), **grouping)
            # The rows past the first ones score less than min_score, or are none.
            done = len(head) == len(ranked) or (
                self.min_score is not None and head[-1][1] < self.min_score
            )
            if len(best) == self.n_similar or done:
                return [document_hit(passage) for passage in best]
        read_rows(self.table, [row for row, _ in ranked], read, _KEYS)
        best = group_by_document(_passages(ranked, read), **grouping)
        read_rows(self.table, [p[ROW_ID] for p in best], read, RESULT_FIELDS)
        return [document_hit({**read[p[ROW_ID]], "score": p["score"]}) for p in best]

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
        read_rows(self.table, rows, read, _KEYS)
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
        read_rows(self.table, best, read, RESULT_FIELDS)
        # The snippet passage's own evidence, beside the document's score: its
        # cosine similarity, and its BM25 where the full-text search returned it.
        return [
            document_hit({**read[row], "score": scores[read[row][DOC_ID]]})
            | {
                "similarity": evidence.similarities.get(row),
                "bm25": evidence.text.get(row),
            }
            for row in best
        ]


def _passages(ranked: list[tuple[int, float]], read: dict[int, dict]) -> list[dict]:
    """The ranked rows of documents with text, with their row id and score."""
    return [
        {**read[row], ROW_ID: row, "score": score}
        for row, score in ranked
        if read[row][PASSAGE] != NO_TEXT_PASSAGE
    ]


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


def document_hit(best: dict) -> dict:
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
