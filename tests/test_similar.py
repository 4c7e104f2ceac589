"""Similar documents: ranking, relation marks, filters, exclusions and errors, on
small real LanceDB tables whose vectors are made to be as near as each case needs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ml_worker import store, upkeep
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.exceptions import (
    DocumentNotVectorized,
    DocumentWithoutText,
    InvalidInput,
    NotFound,
)
from ml_worker.search import Filters, Relation, similar_documents
from ml_worker.search.similar import SOURCE_PASSAGES

NDIMS = 384
SOURCE = "source"
HOSTILE = "o'brien') OR (1 = 1"  # a document id that is also SQL
rng = np.random.default_rng(11)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _near(vectors: np.ndarray, similarity: float) -> np.ndarray:
    """Vectors of about this cosine similarity to ``vectors``, row by row."""
    noise = _unit(rng.standard_normal(vectors.shape))
    # Random directions in 384 dimensions are nearly orthogonal to the vectors.
    return _unit(vectors + np.sqrt(1 / similarity**2 - 1) * noise)


SOURCE_VECTORS = _unit(rng.standard_normal((3, NDIMS)))


def _rows(
    doc_id: str,
    vectors,
    *,
    language: str | None = "ENGLISH",
    content_type: str = "text/plain",
    path: str | None = None,
    tags: tuple[str, ...] = (),
    texts: list[str] | None = None,
    first_passage: int = 0,
) -> list[dict]:
    rows = []
    for n, vector in enumerate(vectors):
        passage = first_passage + n
        text = texts[n] if texts else f"{doc_id}, passage {passage}"
        rows.append(
            {
                "doc_id": doc_id,
                "root_id": doc_id,
                "passage": passage,
                "start": 100 * n,
                "end": 100 * n + len(text),
                "content": text,
                "vector": np.asarray(vector, dtype=np.float32),
                "path": path or f"/docs/{doc_id}.txt",
                "title": f"{doc_id}.txt",
                "content_type": content_type,
                "language": language,
                "tags": list(tags),
                "passage_id": store.passage_id(doc_id, None, passage),
            }
        )
    return rows


def _project_rows() -> list[dict]:
    """The source document and one document for each way of being like it."""
    others = _unit(rng.standard_normal((6, NDIMS)))
    rows = [
        *_rows(SOURCE, SOURCE_VECTORS, texts=["alpha", "beta", "gamma"]),
        # Its text again, nearly: each passage has a counterpart at 0.999.
        *_rows("copy", _near(SOURCE_VECTORS, 0.999), tags=("copies",)),
        # Its text in French: each passage has a counterpart at about 0.9.
        *_rows("traduction", _near(SOURCE_VECTORS, 0.9), language="FRENCH"),
        # About the same things: about 0.7.
        *_rows("similar", _near(SOURCE_VECTORS, 0.7), path="/mail/similar.eml"),
        # The source's passages, and six more: not its near-duplicate.
        *_rows("longer", np.concatenate([SOURCE_VECTORS, others])),
        # One passage like the source's first one, nothing else alike.
        *_rows("partial", SOURCE_VECTORS[:1], texts=["alpha again"]),
        # A document without text, whose row lies right on the source's first
        # passage: still never a result.
        *_rows("empty", SOURCE_VECTORS[:1], texts=[""], first_passage=-1),
        # A document whose id is SQL, like the source.
        *_rows(HOSTILE, _near(SOURCE_VECTORS, 0.6), content_type="message/rfc822"),
    ]
    for n, vectors in enumerate(_unit(rng.standard_normal((40, 2, NDIMS)))):
        rows += _rows(f"unrelated-{n:02d}", vectors)
    return rows


def _table(db, name: str, rows: list[dict], *, indexed: bool):
    table = store.open_or_create_table(
        db, name, model=ENGLISH_MODEL, embed_batch_size=8
    )
    table.add(pa.Table.from_pylist(rows, schema=table.schema))
    if indexed:  # as upkeep leaves a large project's table
        upkeep.create_vector_index(table, table.count_rows())
        upkeep.create_filter_indices(table)
    return table


@pytest.fixture(scope="module", params=["scanned", "indexed"])
def project(request, tmp_path_factory):
    db = store.connect(str(tmp_path_factory.mktemp("similar")))
    return _table(db, "similar", _project_rows(), indexed=request.param == "indexed")


def _ids(hits: list[dict]) -> list[str]:
    return [h["doc_id"] for h in hits]


def test_documents_are_ranked_by_how_much_of_the_source_they_match(project):
    hits = similar_documents(project, SOURCE, n_similar=6)

    assert set(_ids(hits)[:2]) == {"longer", "copy"}
    assert _ids(hits)[2:] == ["traduction", "similar", HOSTILE, "partial"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[1] == pytest.approx(0.999, abs=0.002)


def test_relations_tell_near_duplicates_and_translations_apart(project):
    hits = {h["doc_id"]: h for h in similar_documents(project, SOURCE, n_similar=10)}

    assert hits["copy"]["relation"] == Relation.NEAR_DUPLICATE
    assert hits["traduction"]["relation"] == Relation.TRANSLATION
    assert hits["similar"]["relation"] == Relation.SIMILAR
    # Every passage of the source is in it, but it is three times as long.
    assert hits["longer"]["relation"] == Relation.SIMILAR
    assert hits["partial"]["relation"] == Relation.SIMILAR


def test_relations_are_judged_against_the_whole_table_whatever_the_filters(tmp_path):
    # Sixty ordinary neighbours at about 0.6, and two German documents: one a bit
    # nearer than them, one unrelated. Among German documents only, the first one
    # would stand out.
    rows = [*_rows(SOURCE, SOURCE_VECTORS)]
    for n, vectors in enumerate(_near(np.stack([SOURCE_VECTORS] * 60), 0.6)):
        rows += _rows(f"neighbour-{n:02d}", vectors)
    rows += _rows("nachbar", _near(SOURCE_VECTORS, 0.65), language="GERMAN")
    rows += _rows("fremd", _unit(rng.standard_normal((3, NDIMS))), language="GERMAN")
    table = _table(store.connect(str(tmp_path)), "neighbours", rows, indexed=False)

    for filters in (None, Filters.of(languages="GERMAN")):
        hits = similar_documents(table, SOURCE, n_similar=100, filters=filters)
        (nachbar,) = [h for h in hits if h["doc_id"] == "nachbar"]
        assert nachbar["relation"] == Relation.SIMILAR, filters


def test_every_copy_of_a_document_copied_many_times_is_a_near_duplicate(tmp_path):
    # Its copies are all its nearest neighbours: there is no ordinary one.
    rows = [*_rows(SOURCE, SOURCE_VECTORS)]
    for n in range(60):
        rows += _rows(f"copy-{n:02d}", SOURCE_VECTORS)
    for n, vectors in enumerate(_unit(rng.standard_normal((20, 3, NDIMS)))):
        rows += _rows(f"unrelated-{n:02d}", vectors)
    table = _table(store.connect(str(tmp_path)), "copies", rows, indexed=False)

    hits = similar_documents(table, SOURCE, n_similar=60)

    assert {h["doc_id"] for h in hits} == {f"copy-{n:02d}" for n in range(60)}
    assert {h["relation"] for h in hits} == {Relation.NEAR_DUPLICATE}
    assert [h["score"] for h in hits] == pytest.approx([1.0] * 60)


def test_a_result_shows_the_pair_of_passages_that_matched_best(project):
    (partial,) = [
        h
        for h in similar_documents(project, SOURCE, n_similar=10)
        if h["doc_id"] == "partial"
    ]

    assert partial["snippet"] == "alpha again"
    assert (partial["snippet_start"], partial["snippet_end"]) == (0, 11)
    assert partial["source_snippet"] == "alpha"
    assert (partial["source_snippet_start"], partial["source_snippet_end"]) == (0, 5)
    assert partial["path"] == "/docs/partial.txt"
    assert partial["title"] == "partial.txt"
    assert partial["root_id"] == "partial"
    assert partial["language"] == "ENGLISH"
    assert partial["content_type"] == "text/plain"


def test_neither_the_document_nor_documents_without_text_are_results(project):
    everything = similar_documents(project, SOURCE, n_similar=100)

    assert SOURCE not in _ids(everything)
    assert "empty" not in _ids(everything)
    # Every other document with text, once.
    assert len(everything) == len(set(_ids(everything))) == 6 + 40


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters.of(languages="FRENCH"), {"traduction"}),
        (Filters.of(content_types=["message/rfc822"]), {HOSTILE}),
        (Filters.of(path_prefix="/mail/"), {"similar"}),
        (Filters.of(tags="copies"), {"copy"}),
        (Filters.of(languages=["FRENCH", "ENGLISH"], tags="copies"), {"copy"}),
    ],
)
def test_filters_limit_the_documents_returned(project, filters, expected):
    hits = similar_documents(project, SOURCE, n_similar=10, filters=filters)

    assert set(_ids(hits)) == expected


def test_min_score_leaves_out_documents_below_it(project):
    hits = similar_documents(project, SOURCE, n_similar=10)
    threshold = hits[3]["score"]

    kept = similar_documents(project, SOURCE, n_similar=10, min_score=threshold)

    assert kept == hits[:4]
    assert similar_documents(project, SOURCE, n_similar=10, min_score=1.01) == []


def test_a_document_with_a_hostile_id_is_found_and_left_out_as_itself(project):
    hits = similar_documents(project, HOSTILE, n_similar=100)

    assert HOSTILE not in _ids(hits)
    assert SOURCE in _ids(hits)
    assert "empty" not in _ids(hits)


@pytest.mark.parametrize(
    "filters",
    [
        Filters.of(languages=["ENGLISH') OR (1 = 1"]),
        Filters.of(path_prefix="x') OR (1 = 1 --"),
        Filters.of(tags=["a'], ['b"]),
    ],
)
def test_hostile_filter_values_are_values(project, filters):
    assert similar_documents(project, SOURCE, n_similar=10, filters=filters) == []


@pytest.mark.parametrize(
    "doc_id", ["no-such-document", "x' OR '1' = '1", HOSTILE + "'"]
)
def test_a_document_not_in_the_table_is_a_clear_error(project, doc_id):
    with pytest.raises(DocumentNotVectorized) as error:
        similar_documents(project, doc_id)

    assert isinstance(error.value, NotFound)
    assert repr(doc_id) in str(error.value)
    assert "'similar'" in str(error.value)  # the project


def test_a_document_without_text_is_a_clear_error(project):
    with pytest.raises(
        DocumentWithoutText, match="'empty' of project 'similar' has no text"
    ):
        similar_documents(project, "empty")

    assert issubclass(DocumentWithoutText, InvalidInput)


def test_a_document_alone_in_its_project_has_no_similar_documents(tmp_path):
    rows = [
        *_rows(SOURCE, SOURCE_VECTORS),
        *_rows("empty", SOURCE_VECTORS[:1], texts=[""], first_passage=-1),
    ]
    table = _table(store.connect(str(tmp_path)), "alone", rows, indexed=False)

    assert similar_documents(table, SOURCE) == []


def test_a_crowding_document_leaves_room_for_n_documents(tmp_path):
    # A manual of 200 near-identical pages, each near every source passage, fills
    # every candidate place of a first round; documents without text, all of one
    # vector, every place of the next.
    page = _unit(SOURCE_VECTORS.sum(axis=0))
    pages = _unit(page + 0.002 * rng.standard_normal((200, NDIMS)))
    rows = [*_rows(SOURCE, SOURCE_VECTORS), *_rows("manual", pages)]
    for n in range(60):
        rows += _rows(f"empty-{n:02d}", [page], texts=[""], first_passage=-1)
    for n, vectors in enumerate(_near(np.stack([SOURCE_VECTORS] * 12), 0.3)):
        rows += _rows(f"doc-{n:02d}", vectors)
    table = _table(store.connect(str(tmp_path)), "crowded", rows, indexed=False)

    hits = similar_documents(table, SOURCE, n_similar=5)

    assert len(set(_ids(hits))) == len(hits) == 5
    assert hits[0]["doc_id"] == "manual"
    assert not [doc for doc in _ids(hits) if doc.startswith("empty")]


def test_a_long_document_queries_a_bounded_sample_of_its_passages(tmp_path):
    long = _unit(rng.standard_normal((5 * SOURCE_PASSAGES, NDIMS)))
    rows = [
        *_rows("long", long, texts=[f"page {n}" for n in range(len(long))]),
        *_rows("long-copy", _near(long, 0.995)),
    ]
    for n, vectors in enumerate(_unit(rng.standard_normal((20, 2, NDIMS)))):
        rows += _rows(f"unrelated-{n:02d}", vectors)
    table = _table(store.connect(str(tmp_path)), "long", rows, indexed=False)

    hits = {h["doc_id"]: h for h in similar_documents(table, "long", n_similar=5)}

    copy = hits["long-copy"]
    assert copy["relation"] == Relation.NEAR_DUPLICATE
    assert copy["score"] == pytest.approx(0.995, abs=0.003)
    # The pair that matched best: a page and its copy.
    page = int(copy["source_snippet"].removeprefix("page "))
    assert copy["snippet"] == f"long-copy, passage {page}"


def test_the_bench_smoke_run_measures_every_figure():
    root = Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, "-m", "bench.similar", "--smoke"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("similar translations_recall5=")
    for figure in ("copies_recall5=", "near_duplicate_marked=", "p50_ms="):
        assert figure in last
