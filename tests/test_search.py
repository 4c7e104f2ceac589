"""find_most_similar: modes, grouping into documents, filters inside LanceDB, errors."""

from __future__ import annotations

import statistics
import uuid

import numpy as np
import pyarrow as pa
import pytest

from ml_worker import store, tasks, upkeep
from ml_worker.config import MLWorkerConfig
from ml_worker.constants import ENGLISH_MODEL
from ml_worker.documents import document_id_pages
from ml_worker.es_client import es_client
from ml_worker.exceptions import InvalidInput
from ml_worker.invoke import task_arguments
from ml_worker.search import (
    Filters,
    HybridEvidence,
    Scoring,
    SearchMode,
    group_by_document,
    hybrid_document_scores,
    nearest_passages,
    passages_limit,
    search_queries,
)
from ml_worker.search.scoring import (
    DOCUMENT_VECTOR_WEIGHT,
    FIRST_PASSAGE_TEXT_SHARE,
    FIRST_PASSAGE_VECTOR_SHARE,
    MIN_SPREAD,
)
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)

QUERY = "the cat sat on the mat"
N_CATS = 70  # more than a search fetches unfiltered: filtered documents lie deeper
LONG_TAIL = "The zanzibar ledger was shredded by the harbour master."

MODES = list(SearchMode)


def _filler(n: int) -> str:
    sentence = "Shipment {} of copper left the port on schedule."
    return " ".join(sentence.format(i) for i in range(n))


def _corpus() -> dict[str, tuple[dict, str | None]]:
    """Datashare-shaped documents by id, with their routing."""
    docs: dict[str, tuple[dict, str | None]] = {
        f"cat-{i:03d}": (
            document_source(f"The cat sat on the mat, day {i}.", path=f"/cats/{i}.txt"),
            None,
        )
        for i in range(N_CATS)
    }
    docs["rapport"] = (
        document_source(
            "Le rapport annuel de la banque privée, dossier cat.",
            path="/reports/o'brien/rapport.pdf",
            language="FRENCH",
            content_type="application/pdf",
            tags=["finance", "it's"],
        ),
        None,
    )
    docs["long"] = (
        document_source(
            f"{_filler(120)} {LONG_TAIL} {_filler(20)}", path="/long/log.txt"
        ),
        None,
    )
    docs["attachment"] = (
        document_source(
            "Invoice for a cat basket and a mat.",
            path="/mail/message.eml/invoice.txt",
            root_id="message",
            tags=["invoices"],
        ),
        "message",
    )
    docs["message"] = (
        document_source("See the attached invoice.", path="/mail/message.eml"),
        None,
    )
    docs["empty"] = (
        document_source(None, path="/scans/blank.tiff", content_type="image/tiff"),
        None,
    )
    return docs


@pytest.fixture(scope="module")
async def corpus(es_url, tmp_path_factory):
    """A vectorized project, shared by this module's tests (they only read it)."""
    project = f"test-{uuid.uuid4().hex[:10]}"
    docs = _corpus()
    uri = str(tmp_path_factory.mktemp("vectors"))
    config = MLWorkerConfig(es_address=es_url, vector_db_uri=uri)
    vector_db = store.connect(uri)
    es = es_client(es_url)
    try:
        await create_project_index(es, project)
        await bulk_index(es, project, ((i, s, r) for i, (s, r) in docs.items()))
        store.open_or_create_table(
            vector_db, project, model=ENGLISH_MODEL, embed_batch_size=32
        )
        pages = document_id_pages(es, project, page_size=100)
        ids = [i async for page in pages for i in page]
        counts = await tasks.vectorize_docs(
            ids, project, config=config, es_client=es, vector_db=vector_db
        )
        assert counts["new"] == len(docs)
        yield project, vector_db, {i: s for i, (s, _) in docs.items()}
    finally:
        await es.indices.delete(index=project, ignore_unavailable=True)
        await es.close()


async def _search(corpus, queries=(QUERY,), **kwargs) -> list[list[dict]]:
    project, vector_db, _ = corpus
    # Its arguments checked and converted as every engine does.
    args = {"project": project, "queries": list(queries), **kwargs}
    return await tasks.find_most_similar(
        **task_arguments(tasks.find_most_similar, args), vector_db=vector_db
    )


@pytest.mark.parametrize("mode", MODES)
async def test_hits_are_documents_with_their_best_passage(corpus, mode):
    (hits,) = await _search(
        corpus, ["zanzibar ledger shredded"], mode=mode, n_similar=3
    )
    _, _, sources = corpus

    hit = hits[0]
    assert hit["doc_id"] == "long"
    assert set(hit) == {
        "doc_id",
        "root_id",
        "score",
        "snippet",
        "snippet_start",
        "snippet_end",
        "path",
        "title",
        "content_type",
        "language",
        "raw_score",
        # The snippet passage's evidence, in hybrid mode.
        *(("similarity", "bm25") if mode == "hybrid" else ()),
    }
    content = sources["long"]["content"]
    assert content[hit["snippet_start"] : hit["snippet_end"]] == hit["snippet"]
    assert LONG_TAIL in hit["snippet"]
    assert hit["snippet_start"] > 0  # not the first passage: the long document is split
    assert hit["root_id"] == "long"
    assert (hit["path"], hit["title"]) == ("/long/log.txt", "log.txt")
    assert (hit["content_type"], hit["language"]) == ("text/plain", "ENGLISH")
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores)


async def test_a_keyword_in_a_single_passage_leads_a_hybrid_search(corpus):
    # One full-text hit: a fusion normalizing each list by its own range would
    # weigh it zero and let the vector side decide alone.
    (hits,) = await _search(corpus, ["zanzibar"], n_similar=3)

    assert hits[0]["doc_id"] == "long"


@pytest.mark.parametrize("mode", MODES)
async def test_n_similar_counts_documents(corpus, mode):
    (hits,) = await _search(corpus, mode=mode, n_similar=12)

    assert len(hits) == 12
    assert len({h["doc_id"] for h in hits}) == 12


async def test_one_result_list_per_query_in_order(corpus):
    results = await _search(corpus, [QUERY, "zanzibar ledger"], n_similar=2)

    assert len(results) == 2
    assert results[0][0]["doc_id"].startswith("cat-")
    assert results[1][0]["doc_id"] == "long"


async def test_documents_without_text_are_never_found(corpus):
    (hits,) = await _search(
        corpus, ["scanned blank image"], mode="vector", n_similar=200
    )

    assert "empty" not in {h["doc_id"] for h in hits}
    assert len(hits) == len(_corpus()) - 1


async def test_embedded_documents_carry_their_root(corpus):
    (hits,) = await _search(corpus, ["invoice for a cat basket"], n_similar=1)

    assert (hits[0]["doc_id"], hits[0]["root_id"]) == ("attachment", "message")


FILTERS = [
    ({"languages": ["FRENCH"]}, "rapport"),
    ({"languages": "FRENCH"}, "rapport"),
    ({"content_types": ["application/pdf", "image/png"]}, "rapport"),
    ({"path_prefix": "/reports/o'brien/"}, "rapport"),
    ({"tags": ["it's"]}, "rapport"),
    ({"tags": ["no-such-tag", "invoices"]}, "attachment"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("filters", "expected"), FILTERS)
async def test_filters_apply_inside_lancedb(corpus, mode, filters, expected):
    project, vector_db, _ = corpus
    table = store.open_table(vector_db, project)
    unfiltered = _candidate_doc_ids(table, QUERY, mode, passages_limit(3))
    assert expected not in unfiltered  # not a post-filter of the unfiltered ones

    (hits,) = await _search(corpus, mode=mode, n_similar=3, **filters)

    assert [h["doc_id"] for h in hits] == [expected]


def _candidate_doc_ids(table, query: str, mode: SearchMode, limit: int) -> set[str]:
    """The documents of the passages an unfiltered search ranks."""
    row_ids: set[int] = set()
    if mode is not SearchMode.TEXT:
        vector = store.table_embedder(table).compute_query_embeddings([query])[0]
        row_ids |= nearest_passages(table, vector, limit).keys()
    if mode is not SearchMode.VECTOR:
        by_text = table.search(query, query_type="fts").with_row_id(True).limit(limit)
        row_ids |= set(by_text.to_arrow()["_rowid"].to_pylist())
    rows = table.take_row_ids(sorted(row_ids)).select(["doc_id"]).to_arrow()
    return set(rows["doc_id"].to_pylist())


async def test_filters_combine(corpus):
    (hits,) = await _search(
        corpus, languages=["ENGLISH"], path_prefix="/mail/", n_similar=10
    )
    assert {h["doc_id"] for h in hits} == {"attachment", "message"}

    (hits,) = await _search(corpus, languages=["FRENCH"], tags=["invoices"])
    assert hits == []


@pytest.mark.parametrize("scoring", list(Scoring))
async def test_a_search_matching_nothing_finds_nothing(corpus, scoring):
    (hits,) = await _search(corpus, languages=["KLINGON"], scoring=scoring.value)
    assert hits == []


async def test_filter_values_are_quoted(corpus):
    (hits,) = await _search(corpus, languages=["ENGLISH') OR (1 = 1"], mode="text")
    assert hits == []


@pytest.mark.parametrize("mode", MODES)
async def test_min_score_leaves_out_lower_documents(corpus, mode):
    query = ["zanzibar ledger shredded by a cat"]
    (hits,) = await _search(corpus, query, mode=mode, n_similar=20)
    threshold = hits[0]["score"]

    (kept,) = await _search(corpus, query, mode=mode, n_similar=20, min_score=threshold)

    assert kept == [h for h in hits if h["score"] >= threshold]
    assert len(kept) < len(hits)
    (none,) = await _search(corpus, query, mode=mode, min_score=threshold + 1)
    assert none == []


def _passage(doc_id: str, score: float, index: int = 0) -> dict:
    row_id = hash((doc_id, index))
    return {"doc_id": doc_id, "passage": index, "row_id": row_id, "score": score}


PASSAGES = [
    _passage("a", 0.9),
    _passage("b", 0.8, 0),
    _passage("b", 0.7, 3),
    _passage("b", 0.6, 1),
    _passage("c", 0.5),
]


def test_best_passage_scores_a_document_by_its_best_passage():
    ranked = group_by_document(PASSAGES, n_similar=10, scoring=Scoring.BEST_PASSAGE)

    assert [(r["doc_id"], r["score"]) for r in ranked] == [
        ("a", 0.9),
        ("b", 0.8),
        ("c", 0.5),
    ]
    assert ranked[1]["passage"] == 0


def test_weighted_sum_rewards_documents_matching_in_several_places():
    ranked = group_by_document(PASSAGES, n_similar=10, scoring=Scoring.WEIGHTED_SUM)

    assert [r["doc_id"] for r in ranked] == ["b", "a", "c"]
    assert ranked[0]["score"] == pytest.approx(0.8 + 0.7 / 2 + 0.6 / 4)
    assert ranked[0]["passage"] == 0  # the snippet is still the best passage


def test_grouping_keeps_n_similar_documents_and_min_score():
    ranked = group_by_document(PASSAGES, n_similar=2, scoring=Scoring.BEST_PASSAGE)
    assert len(ranked) == 2
    ranked = group_by_document(
        PASSAGES, n_similar=10, scoring=Scoring.BEST_PASSAGE, min_score=0.8
    )
    assert [r["doc_id"] for r in ranked] == ["a", "b"]


def test_a_hybrid_document_score_weighs_its_first_passage_and_its_best_one():
    # Row ids: "intro" matches by its first passage, "deep" by its fourth.
    keys = {1: ("intro", 0), 2: ("intro", 1), 4: ("deep", 3)}
    evidence = HybridEvidence(first={"intro": 0.7, "deep": 0.3})
    evidence.add(
        similarities={1: 0.7, 4: 0.8, 2: 0.5},
        bm25={1: 2.0, 4: 4.0},
        best_bm25=4.0,
        limit=50,
    )

    scores = hybrid_document_scores(keys, evidence)

    a, b, w = (
        FIRST_PASSAGE_VECTOR_SHARE,
        FIRST_PASSAGE_TEXT_SHARE,
        DOCUMENT_VECTOR_WEIGHT,
    )
    # The vector side is standardized by the nearest passages' similarities.
    mean, spread = statistics.fmean([0.7, 0.8, 0.5]), statistics.pstdev([0.7, 0.8, 0.5])
    assert scores["intro"] == pytest.approx(w * (0.7 - mean) / spread + (1 - w) * 0.5)
    deep_vector = a * 0.3 + (1 - a) * 0.8
    assert scores["deep"] == pytest.approx(
        w * (deep_vector - mean) / spread + (1 - w) * (1 - b) * 1.0
    )
    # Its first passage says "intro" is about the query; its best one, a little
    # nearer, that "deep" is.
    assert deep_vector < 0.7


def test_a_full_text_candidate_has_at_most_its_rounds_farthest_similarity():
    keys = {1: ("near", 0), 2: ("near", 1), 3: ("text-only", 2)}
    evidence = HybridEvidence(first={"near": 0.9, "text-only": 0.2})
    evidence.add(similarities={1: 0.9, 2: 0.6}, bm25={3: 1.0}, best_bm25=1.0, limit=50)

    scores = hybrid_document_scores(keys, evidence)

    a, b = FIRST_PASSAGE_VECTOR_SHARE, FIRST_PASSAGE_TEXT_SHARE
    assert scores["text-only"] == pytest.approx(
        evidence.score(a * 0.2 + (1 - a) * 0.6, 1 - b)
    )
    # The full-text list was short: it held every row with a word of the query.
    assert scores["near"] == pytest.approx(evidence.score(0.9, 0.0))


def test_a_vector_candidate_has_at_most_its_rounds_lowest_bm25():
    # Lists of 2 rows are full: a row the full-text search left out may have the
    # query's words, at most as often as its lowest row. Rows of a next round,
    # whose list is short, have none of them.
    keys = {1: ("near", 0), 2: ("a", 0), 3: ("b", 0), 4: ("later", 1)}
    evidence = HybridEvidence(first={"later": 0.5})
    evidence.add(
        similarities={1: 0.9, 2: 0.6}, bm25={2: 4.0, 3: 2.0}, best_bm25=4.0, limit=2
    )
    evidence.add(similarities={4: 0.5, 5: 0.4}, bm25={}, best_bm25=4.0, limit=2)

    scores = hybrid_document_scores(keys, evidence)

    assert evidence.text_floor[1] == evidence.text[3] == 0.5
    assert scores["near"] == pytest.approx(evidence.score(0.9, 0.5))
    a = FIRST_PASSAGE_VECTOR_SHARE
    assert scores["later"] == pytest.approx(evidence.score(a * 0.5 + (1 - a) * 0.5, 0))


def _evidence(spread: float) -> tuple[dict, HybridEvidence]:
    """60 one-passage documents, nearer as their number is lower, by similarities
    of about this standard deviation, and a BM25 that ranks them otherwise."""
    keys = {row: (f"doc-{row}", 0) for row in range(60)}
    bm25 = {row: 1.0 + row % 7 for row in range(60)}
    evidence = HybridEvidence()
    step = spread * (12 / (50**2 - 1)) ** 0.5  # 50 even steps: sd = 14.4 steps
    evidence.add({r: 0.8 - r * step for r in range(60)}, bm25, best_bm25=7.0, limit=50)
    return keys, evidence


def test_scores_do_not_depend_on_how_spread_a_models_similarities_are():
    # The same ranking by a model whose similarities are half as spread.
    wide_keys, wide = _evidence(0.2)
    narrow_keys, narrow = _evidence(0.1)

    assert hybrid_document_scores(narrow_keys, narrow) == pytest.approx(
        hybrid_document_scores(wide_keys, wide)
    )


def test_a_very_narrow_spread_counts_as_the_least_one():
    # multilingual-e5's similarities are this close: scaled by their own spread, a
    # hair's difference of similarity outweighed a lone keyword's whole BM25.
    _, narrow = _evidence(0.01)

    assert narrow.similarity_spread == MIN_SPREAD
    assert narrow.vector_side(0.81) - narrow.vector_side(0.8) == pytest.approx(
        0.01 / MIN_SPREAD
    )


def test_hybrid_search_ranks_a_document_about_the_query_above_a_near_miss(vector_db):
    # "intro" is about the query from its first passage on; "deep" has one passage,
    # far in, a little nearer to the query: a near miss among many passages.
    table = store.open_or_create_table(
        vector_db, "first-passages", model=ENGLISH_MODEL, embed_batch_size=8
    )
    rng = np.random.default_rng(5)
    query = _unit(rng.standard_normal(384))

    def near(similarity: float) -> list[float]:
        other = rng.standard_normal(384)
        other = _unit(other - other @ query * query)
        return (similarity * query + np.sqrt(1 - similarity**2) * other).tolist()

    def row(doc: str, passage: int, vector) -> dict:
        content = f"passage {passage} of {doc}"
        return {
            "doc_id": doc,
            "passage_id": store.passage_id(doc, None, passage),
            "root_id": doc,
            "passage": passage,
            "start": 0,
            "end": len(content),
            "content": content,
            "vector": vector,
        }

    rows = [row("intro", 0, near(0.8)), row("intro", 1, near(0.3))]
    rows += [row("deep", p, near(0.1)) for p in range(5)] + [row("deep", 5, near(0.85))]
    table.add(pa.Table.from_pylist(rows, schema=table.schema))

    (hits,) = search_queries(
        table, ["zebra"], mode=SearchMode.HYBRID, n_similar=2, vectors=[query.tolist()]
    )
    (by_best,) = search_queries(
        table, ["zebra"], mode=SearchMode.VECTOR, n_similar=2, vectors=[query.tolist()]
    )

    assert [h["doc_id"] for h in hits] == ["intro", "deep"]
    assert [h["doc_id"] for h in by_best] == ["deep", "intro"]
    assert hits[1]["snippet"] == "passage 5 of deep"  # still its best passage


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


@pytest.mark.parametrize("mode", [SearchMode.VECTOR, SearchMode.HYBRID])
def test_documents_without_text_never_take_the_places_of_passages(vector_db, mode):
    # Many documents without text, all nearest to the query: a first fetch holds
    # only them, and the search must look past them.
    table = store.open_or_create_table(
        vector_db, "blank-scans", model=ENGLISH_MODEL, embed_batch_size=8
    )
    rng = np.random.default_rng(3)
    blank = rng.standard_normal(384).astype(np.float32)
    blank /= np.linalg.norm(blank)

    def row(i: int, passage: int, vector, content: str) -> dict:
        return {
            "doc_id": f"d{i}",
            "passage_id": store.passage_id(f"d{i}", None, passage),
            "root_id": f"d{i}",
            "passage": passage,
            "start": 0,
            "end": len(content),
            "content": content,
            "vector": vector,
        }

    rows = [row(i, store.NO_TEXT_PASSAGE, blank, "") for i in range(60)]
    for i in range(60, 70):
        v = blank + rng.standard_normal(384).astype(np.float32)
        rows.append(row(i, 0, v / np.linalg.norm(v), f"report number {i}"))
    table.add(pa.Table.from_pylist(rows, schema=table.schema))

    (hits,) = search_queries(
        table, ["scan"], mode=mode, n_similar=10, vectors=[blank.tolist()]
    )

    assert sorted(h["doc_id"] for h in hits) == [f"d{i}" for i in range(60, 70)]


async def test_the_task_ranks_by_the_scoring_it_is_given(corpus):
    query = ["copper shipment left the port"]  # every passage of "long" says so
    # In vector mode, best_passage is the best passage's score (hybrid's also weighs
    # a document's first passage): a weighted sum adds the next passages to it.
    search = {"n_similar": 5, "mode": "vector"}
    (best,) = await _search(corpus, query, scoring="best_passage", **search)
    (weighted,) = await _search(corpus, query, scoring="weighted_sum", **search)

    for hits in (best, weighted):
        assert len(hits) == 5
        assert [h["score"] for h in hits] == sorted(
            (h["score"] for h in hits), reverse=True
        )
    # Compared on the ranking's own scale: a sum of a document's passages'.
    best_scores = {h["doc_id"]: h["raw_score"] for h in best}
    # A weighted sum adds a document's next passages to its best one.
    assert all(
        h["raw_score"] >= best_scores[h["doc_id"]] - 1e-6
        for h in weighted
        if h["doc_id"] in best_scores
    )
    assert weighted[0]["doc_id"] == "long"
    assert weighted[0]["raw_score"] > best_scores["long"] + 1e-6


BAD_ARGS = [
    ({"queries": []}, r"argument queries .*at least 1 item"),
    ({"queries": "a query"}, r"argument queries .*valid list, got 'a query'"),
    ({"queries": ["ok", "  "]}, r"argument queries\[1\] .*must not be blank"),
    ({"queries": [3]}, r"argument queries\[0\] .*valid string, got 3"),
    ({"n_similar": 0}, "argument n_similar .*greater than 0, got 0"),
    ({"n_similar": -2}, "argument n_similar .*greater than 0, got -2"),
    ({"n_similar": "10"}, "argument n_similar .*valid integer, got '10'"),
    ({"mode": "fuzzy"}, "argument mode .*'hybrid', 'vector' or 'text', got 'fuzzy'"),
    ({"scoring": "sum"}, "argument scoring .*'best_passage' or 'weighted_sum'"),
    ({"min_score": "high"}, "argument min_score .*valid number, got 'high'"),
    ({"languages": 3}, "argument languages .*a string or a list of strings, got 3"),
    ({"tags": ["a", None]}, "argument tags .*a string or a list of strings"),
    ({"path_prefix": ["/a"]}, r"argument path_prefix .*valid string, got \['/a'\]"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGS)
async def test_bad_arguments_are_clear_errors(vector_db, args, message):
    args = {"project": "p", "queries": [QUERY], **args}
    with pytest.raises(InvalidInput, match=f"invalid {message}"):
        task_arguments(tasks.find_most_similar, args)


# A manual of near-identical pages (one page repeated), whose passages all rank first.
CROWD_QUERY = "create a temporary file in a safe manner"
CROWD_PAGES = 2_000
N_ORDINARY = 60
_TOPICS = [
    "mkstemp opens a temporary file that only its owner can read",
    "a temporary directory and its files are removed when the block ends",
    "write the report to a named temporary file, then rename it",
    "the shipping ledger file was created in the harbour office",
    "a safe manner to store passwords is a salted hash",
    "the budget file was created and reviewed by the board",
]


def _crowded_rows(table) -> list[dict]:
    """Rows of the manual and of ordinary documents, every other one in German."""
    texts = [f"How to {CROWD_QUERY}: manual page, see the tempfile module."]
    texts += [f"{_TOPICS[i % len(_TOPICS)]} (note {i})." for i in range(N_ORDINARY)]
    # Each distinct text embedded once: the manual's pages differ by a little noise.
    vectors = np.array(store.table_embedder(table).compute_source_embeddings(texts))
    noise = np.random.default_rng(5).standard_normal((CROWD_PAGES, vectors.shape[1]))
    pages = vectors[0] + 0.002 * noise
    pages /= np.linalg.norm(pages, axis=1, keepdims=True)

    def row(doc_id: str, passage: int, text: str, vector, language: str) -> dict:
        return {
            "doc_id": doc_id,
            "root_id": doc_id,
            "passage": passage,
            "start": passage * (len(text) + 1),
            "end": passage * (len(text) + 1) + len(text),
            "content": text,
            "vector": vector,
            "path": f"/docs/{doc_id}.txt",
            "title": f"{doc_id}.txt",
            "language": language,
            "passage_id": store.passage_id(doc_id, None, passage),
        }

    rows = [row("manual", i, texts[0], page, "ENGLISH") for i, page in enumerate(pages)]
    for i, (text, vector) in enumerate(zip(texts[1:], vectors[1:], strict=False)):
        language = "ENGLISH" if i % 2 else "GERMAN"
        rows.append(row(f"doc-{i:02d}", 0, text, vector, language))
    return rows


@pytest.fixture(scope="module", params=["scanned", "indexed"])
def crowded(request, tmp_path_factory):
    """A project where one document's passages fill every candidate place, without
    indices (scanned) and with those of a large project (``ensure_indices``')."""
    db = store.connect(str(tmp_path_factory.mktemp("crowded")))
    table = store.open_or_create_table(
        db, "crowded", model=ENGLISH_MODEL, embed_batch_size=32
    )
    table.add(pa.Table.from_pylist(_crowded_rows(table), schema=table.schema))
    if request.param == "indexed":
        upkeep.create_vector_index(table, table.count_rows())
        upkeep.create_filter_indices(table)
        table.optimize()  # the rows into the full-text index
    return table


def _crowd_search(table, mode, **kwargs) -> list[dict]:
    (hits,) = search_queries(table, [CROWD_QUERY], mode=mode, n_similar=10, **kwargs)
    return hits


@pytest.mark.parametrize("scoring", list(Scoring))
@pytest.mark.parametrize("mode", MODES)
def test_a_crowding_document_leaves_room_for_n_documents(crowded, mode, scoring):
    hits = _crowd_search(crowded, mode, scoring=scoring)

    assert len({h["doc_id"] for h in hits}) == len(hits) == 10
    assert hits[0]["doc_id"] == "manual"  # relevant, and still found
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("mode", MODES)
def test_a_crowding_document_leaves_room_for_n_filtered_documents(crowded, mode):
    hits = _crowd_search(crowded, mode, where=Filters.of(languages="ENGLISH").sql())

    assert len({h["doc_id"] for h in hits}) == len(hits) == 10
    assert hits[0]["doc_id"] == "manual"
    assert {h["language"] for h in hits} == {"ENGLISH"}


@pytest.mark.parametrize("scoring", list(Scoring))
@pytest.mark.parametrize("mode", MODES)
def test_a_crowding_document_leaves_room_above_min_score(crowded, mode, scoring):
    hits = _crowd_search(crowded, mode, scoring=scoring)
    threshold = hits[-1]["score"]

    assert _crowd_search(crowded, mode, scoring=scoring, min_score=threshold) == hits
    threshold = hits[4]["score"]
    above = _crowd_search(crowded, mode, scoring=scoring, min_score=threshold)
    assert above == [h for h in hits if h["score"] >= threshold]


@pytest.mark.parametrize("mode", [SearchMode.VECTOR, SearchMode.TEXT])
def test_the_documents_past_a_crowding_one_are_the_best_ones(crowded, mode):
    hits = _crowd_search(crowded, mode)

    assert hits[0]["doc_id"] == "manual"
    scanned = crowded.index_stats(upkeep.FTS_INDEX).num_unindexed_rows > 0
    if mode is SearchMode.TEXT and scanned:
        # Unindexed, BM25 weighs words among the rows searched: without the manual,
        # its words are rare. The others rank by these weights, their scores scaled.
        rest = _best_scores(crowded, mode, "doc_id != 'manual'")
    else:
        rest = _best_scores(crowded, mode)
        assert [h["score"] for h in hits] == pytest.approx(
            [rest[h["doc_id"]] for h in hits]
        )
    rest.pop("manual", None)
    found = [rest[h["doc_id"]] for h in hits[1:]]
    assert found == pytest.approx(sorted(rest.values(), reverse=True)[:9])


def _best_scores(table, mode: SearchMode, where: str | None = None) -> dict:
    """Each document's best passage score, from a search of every row."""
    if mode is SearchMode.VECTOR:
        query = table.search(CROWD_QUERY, query_type="vector").distance_type("cosine")
        query = query.bypass_vector_index()
    else:
        query = table.search(CROWD_QUERY, query_type="fts", fts_columns="content")
    if where is not None:
        query = query.where(where, prefilter=True)
    best: dict[str, float] = {}
    for row in query.limit(table.count_rows()).to_list():
        score = 1 - row["_distance"] / 2 if mode is SearchMode.VECTOR else row["_score"]
        best[row["doc_id"]] = max(best.get(row["doc_id"], score), score)
    return best
