"""Similar documents ("more like this"): the documents nearest to a stored one.

Nothing is embedded: the given document's own passage vectors are the queries. At
most ``SOURCE_PASSAGES`` of them, spread evenly over the document, each ask the
vector index for their nearest passages of other documents, in one LanceDB query
whose condition leaves out the document itself (``doc_id != ...``, answered by the
doc_id index) and applies the search's filters. A candidate document's score is
the mean, over these source passages, of the similarity of its nearest passage to
each (see ``similar_documents``); its result shows the pair of passages that
matched best, and a relation: a near-duplicate, a translation, or similar, judged
on similarities relative to what an ordinary neighbour scores, so that the same
thresholds hold for every model.

A document's passages crowding every candidate place (a manual of near-identical
pages) are dealt with as a search does: a next round excludes the documents found.
"""

from __future__ import annotations

import enum
import statistics
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from lancedb.table import Table

from ml_worker.exceptions import DocumentNotVectorized, DocumentWithoutText
from ml_worker.search.filters import PASSAGES_ONLY, Filters, sql_list
from ml_worker.search.grouping import MAX_ROUNDS, RESULT_FIELDS, document_hit
from ml_worker.search.retrieval import (
    MIN_PASSAGES,
    ROW_ID,
    nearest_rows,
    passages_limit,
    read_rows,
)
from ml_worker.store import (
    CONTENT,
    DOC_ID,
    NO_TEXT_PASSAGE,
    PASSAGE,
    VECTOR,
    sql_string,
)

_LANGUAGE = "language"

# The given document's passages that query the index: a long document's are spread
# evenly over it (its first passage always among them), so that a search costs at
# most this many nearest-neighbour queries, and a near-duplicate's difference
# anywhere in the text still shows.
SOURCE_PASSAGES = 8

# Relations are judged on similarities relative to the source passage's background:
# the similarity of its MIN_PASSAGES-th nearest passage of other documents, what
# an ordinary neighbour scores with the table's model. A similarity s counts as
# (s - background) / (1 - background): 0 for an ordinary neighbour, 1 for the same
# passage. Raw similarities mean different things with each model: the background
# was 0.11 to 0.63 (median 0.44) with the English model on the copies set of
# bench.similar, 0.83 to 0.91 (median 0.87) with the multilingual one, and no raw
# threshold suits both: 0.93 on half the passages marked 116 of 120 pairs of copies
# with the first, and 48 pairs of different sections with the second; 0.95, 110
# and 5 (docs/retrieval.md).
# A background above MAX_BACKGROUND is the document's own copies crowding its
# neighbourhood: it counts as MAX_BACKGROUND.
MAX_BACKGROUND = 0.95

# A near-duplicate: in the same language, as many passages give or take
# DUPLICATE_LENGTH_TOLERANCE of the given document's (at least one), and a passage
# of relative similarity DUPLICATE_SIMILARITY or more to DUPLICATE_SHARE of the
# source passages. Half, not most: a paragraph added or dropped shifts every
# passage after it, whose counterparts then share only part of their text. Chosen
# with bench.similar (docs/retrieval.md): of 60 copies (exact, 3 words changed, a
# paragraph dropped or added, whitespace and case), 117 of 120 pairs found marked
# with the English model, 116 with the multilingual one, no other document of the
# same language marked. A share of 0.75 marked 103 of 120; a relative similarity of
# 0.75 also marked 11 pairs of Debian's exim4 packages, whose descriptions share
# half their paragraphs (0.8: 4).
DUPLICATE_SIMILARITY = 0.8
DUPLICATE_SHARE = 0.5
DUPLICATE_LENGTH_TOLERANCE = 0.25
# A translation: in another language, and a document score relative to the
# background (the mean of the source passages') of this or more. On 60 Debian
# package descriptions in 6 languages, multilingual model: 96.7 % of the
# translations among the 5 most similar are marked; among the 15 most similar,
# 18 % of the documents in another language that are not translations (0.3: 91.4 %
# and 13.6 %; a raw score of 0.88: 92 % and 15 %).
TRANSLATION_SCORE = 0.25


class Relation(enum.StrEnum):
    """How a similar document relates to the given one."""

    NEAR_DUPLICATE = "near_duplicate"  # the same text, or nearly
    TRANSLATION = "translation"  # the same text in another language
    SIMILAR = "similar"


@dataclass(frozen=True)
class _Source:
    """The given document: what its sampled passages query the index with."""

    doc_id: str
    language: str | None
    n_passages: int  # all its passages with text
    rows: list[dict]  # the sampled passages' fields, vector included


@dataclass
class _Candidate:
    """What the nearest rows told of a candidate document."""

    # Its nearest passage's similarity to each source passage that found one, by
    # the source passage's index in ``_Source.rows``.
    similarities: dict[int, float] = field(default_factory=dict)
    # The best pair: its similarity, the source passage's index, the row's id.
    best: tuple[float, int, int] = (-2.0, 0, 0)

    def add(self, source: int, row: int, similarity: float) -> None:
        if similarity > self.similarities.get(source, -2.0):
            self.similarities[source] = similarity
        if similarity > self.best[0]:
            self.best = (similarity, source, row)

    def score(self, floors: list[float]) -> float:
        """The mean over the source passages of the nearest passage's similarity;
        a source passage whose nearest rows did not include this document counts
        the farthest of them, the most it can be. Clipped to 0..1."""
        found = self.similarities
        mean = statistics.fmean(found.get(i, floor) for i, floor in enumerate(floors))
        return min(max(mean, 0.0), 1.0)


def similar_documents(
    table: Table,
    doc_id: str,
    *,
    n_similar: int = 10,
    filters: Filters | None = None,
    min_score: float | None = None,
) -> list[dict]:
    """The ``n_similar`` documents of the table most similar to ``doc_id``, best first.

    Each result is a search's (``doc_id``, ``root_id``, ``path``, ``title``,
    ``content_type``, ``language``, ``snippet``, ``snippet_start``, ``snippet_end``:
    the similar document's passage that matched best) with the given document's
    passage it matched (``source_snippet``, ``source_snippet_start``,
    ``source_snippet_end``), a ``score`` and a ``relation`` (``Relation``).

    ``score``, from 0 to 1: the mean, over the given document's sampled passages
    (``SOURCE_PASSAGES``), of the cosine similarity of the document's passage
    nearest to each (a passage whose nearest rows left the document out counts the
    farthest of them). 1: each has an identical passage in the document. Its scale
    is the model's: a multilingual-e5 score of 0.85 is an ordinary neighbour, an
    English MiniLM one a close match. ``relation`` is judged on a scale of the
    table's own (see MAX_BACKGROUND), whatever the filters.

    ``filters`` limit the documents returned; ``min_score`` leaves out those scoring
    below it. The given document is never among the results, nor are documents
    without text. Raises ``DocumentNotVectorized`` when the table has no row of the
    document, ``DocumentWithoutText`` when it has no passage with text.
    """
    source = _source(table, doc_id)
    limit = passages_limit(n_similar)
    itself = f"{DOC_ID} != {sql_string(doc_id)}"
    conditions = [itself]
    if filters is not None and (where := filters.sql()) is not None:
        conditions.append(f"({where})")
    vectors = [row[VECTOR] for row in source.rows]
    scored: dict[str, tuple[float, _Candidate]] = {}
    background: list[float] = []
    for round_ in range(MAX_ROUNDS):
        lists = nearest_rows(
            table, vectors, limit, " AND ".join(conditions), [DOC_ID, PASSAGE]
        )
        if not round_:
            if len(conditions) > 1:  # filtered: the background is the table's
                lists_of_all = nearest_rows(table, vectors, MIN_PASSAGES, itself, [])
                background = [_background(rows) for rows in lists_of_all]
            else:
                background = [_background(rows) for rows in lists]
        candidates, blank = _candidates(lists)
        floors = [_floor(rows) for rows in lists]
        for doc, candidate in candidates.items():
            score = candidate.score(floors)
            if min_score is None or score >= min_score:
                scored[doc] = (score, candidate)
        # A next round only when rows outside these lists may still make a result.
        full = any(rows.num_rows >= limit for rows in lists)
        ceiling = statistics.fmean(floors)
        if len(scored) >= n_similar or not full:
            break
        if min_score is not None and ceiling < min_score:
            break
        if candidates:
            found = tuple(sorted(candidates))
            conditions.append(f"{DOC_ID} NOT IN ({sql_list(found)})")
        if blank and PASSAGES_ONLY not in conditions:
            # Rows of documents without text crowded the lists: leave them out, at
            # the cost of a scan (see retrieval.nearest_passages).
            conditions.append(PASSAGES_ONLY)
    best = sorted(scored.items(), key=lambda item: (-item[1][0], item[0]))
    return _hits(table, source, background, best[:n_similar])


def _source(table: Table, doc_id: str) -> _Source:
    """The given document's passages, ``SOURCE_PASSAGES`` of them at most."""
    rows = (
        table.search()
        .where(f"{DOC_ID} = {sql_string(doc_id)}")
        .with_row_id(True)
        .select([PASSAGE, _LANGUAGE])
        .limit(None)
        .to_arrow()
    )
    if not rows.num_rows:
        msg = (
            f"document {doc_id!r} has no vectors in project {table.name!r}: it is not"
            " in the project, or was not vectorized yet"
        )
        raise DocumentNotVectorized(msg)
    passages = sorted(
        (passage, row)
        for passage, row in zip(
            rows[PASSAGE].to_pylist(), rows[ROW_ID].to_pylist(), strict=True
        )
        if passage != NO_TEXT_PASSAGE
    )
    if not passages:
        msg = (
            f"document {doc_id!r} of project {table.name!r} has no text: there is"
            " nothing to compare other documents with"
        )
        raise DocumentWithoutText(msg)
    n = len(passages)
    picked = list(range(n))
    if n > SOURCE_PASSAGES:
        step = (n - 1) / (SOURCE_PASSAGES - 1)
        picked = sorted({round(i * step) for i in range(SOURCE_PASSAGES)})
    sampled = [passages[i][1] for i in picked]
    read: dict[int, dict] = {}
    read_rows(table, sampled, read, [VECTOR, CONTENT, "start", "end"])
    return _Source(
        doc_id=doc_id,
        language=rows[_LANGUAGE][0].as_py(),
        n_passages=n,
        rows=[{**read[row], ROW_ID: row} for row in sampled],
    )


def _candidates(lists: list[pa.Table]) -> tuple[dict[str, _Candidate], bool]:
    """The documents of the source passages' nearest rows, and whether rows of
    documents without text were among them."""
    candidates: dict[str, _Candidate] = {}
    blank = False
    for source, rows in enumerate(lists):
        columns = (rows[c].to_pylist() for c in (DOC_ID, PASSAGE, ROW_ID, "_distance"))
        for doc, passage, row, distance in zip(*columns, strict=True):
            if passage == NO_TEXT_PASSAGE:
                blank = True
                continue
            candidates.setdefault(doc, _Candidate()).add(source, row, 1.0 - distance)
    return candidates, blank


def _background(rows: pa.Table) -> float:
    """A source passage's background: the similarity of its MIN_PASSAGES-th
    nearest passage (the farthest of fewer), at most MAX_BACKGROUND."""
    if not rows.num_rows:
        return 0.0
    distances = rows["_distance"].to_pylist()[:MIN_PASSAGES]
    return min(1.0 - max(distances), MAX_BACKGROUND)


def _relative(similarity: float, background: float) -> float:
    """A similarity relative to a background: 0 at the background, 1 at 1."""
    return (similarity - background) / (1.0 - background)


def _floor(rows: pa.Table) -> float:
    """The farthest of a source passage's nearest rows: the most a document it did
    not find can have."""
    if not rows.num_rows:
        return 0.0
    return 1.0 - pc.max(rows["_distance"]).as_py()


def _hits(
    table: Table,
    source: _Source,
    background: list[float],
    best: list[tuple[str, tuple[float, _Candidate]]],
) -> list[dict]:
    """The results of the best documents, with their relation to the source."""
    if not best:
        return []
    read: dict[int, dict] = {}
    read_rows(table, [c.best[2] for _, (_, c) in best], read, RESULT_FIELDS)
    counts = _passage_counts(table, [doc for doc, _ in best])
    hits = []
    for doc, (score, candidate) in best:
        _, source_index, row = candidate.best
        matched = source.rows[source_index]
        fields = read[row]
        relation = _relation(
            source,
            candidate,
            score,
            background,
            counts.get(doc, 0),
            fields[_LANGUAGE],
        )
        hits.append(
            {
                **document_hit({**fields, "score": score}),
                "relation": relation.value,
                "source_snippet": matched[CONTENT],
                "source_snippet_start": matched["start"],
                "source_snippet_end": matched["end"],
            }
        )
    return hits


def _passage_counts(table: Table, doc_ids: list[str]) -> dict[str, int]:
    """How many passages with text each of these documents has."""
    rows = (
        table.search()
        .where(f"{DOC_ID} IN ({sql_list(tuple(doc_ids))}) AND {PASSAGES_ONLY}")
        .select([DOC_ID])
        .limit(None)
        .to_arrow()
    )
    counts = pc.value_counts(rows[DOC_ID]).to_pylist()
    return {count["values"]: count["counts"] for count in counts}


def _relation(
    source: _Source,
    candidate: _Candidate,
    score: float,
    background: list[float],
    n_passages: int,
    language: str | None,
) -> Relation:
    """A near-duplicate, a translation, or similar (see the thresholds above)."""
    near = [
        i
        for i, similarity in candidate.similarities.items()
        if _relative(similarity, background[i]) >= DUPLICATE_SIMILARITY
    ]
    tolerance = max(1.0, DUPLICATE_LENGTH_TOLERANCE * source.n_passages)
    if (
        language == source.language
        and len(near) >= DUPLICATE_SHARE * len(source.rows)
        and abs(n_passages - source.n_passages) <= tolerance
    ):
        return Relation.NEAR_DUPLICATE
    other_language = bool(language and source.language) and language != source.language
    relative = _relative(score, statistics.fmean(background))
    if other_language and relative >= TRANSLATION_SCORE:
        return Relation.TRANSLATION
    return Relation.SIMILAR
