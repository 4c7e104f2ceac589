import pytest

from ml_worker import documents, search, store, text_analysis
from ml_worker.constants import ENGLISH_MODEL
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)

FRENCH = {
    "d1": "Les enquêteurs ont retrouvé les comptes bancaires cachés au Panama.",
    "d2": "Le maire inaugure la nouvelle bibliothèque municipale demain.",
    "d3": "Ils mangent au restaurant tous les vendredis soir.",
}


def test_a_project_nearly_all_in_one_stemmed_language_is_stemmed_in_it():
    assert text_analysis.analysis_for({"FRENCH": 95, "ENGLISH": 5}).language == (
        "French"
    )
    assert text_analysis.analysis_for({"RUSSIAN": 10}).language == "Russian"


@pytest.mark.parametrize(
    "languages",
    [
        {"FRENCH": 60, "GERMAN": 40},  # mixed
        {"POLISH": 10},  # a language LanceDB does not stem
    ],
)
def test_other_projects_get_a_language_neutral_analysis(languages):
    assert text_analysis.analysis_for(languages) == text_analysis.NEUTRAL
    assert text_analysis.NEUTRAL.base_tokenizer == "ngram"


def test_a_project_without_documents_is_analysed_as_english():
    assert text_analysis.analysis_for({}).language == "English"


def _french_table(vector_db, languages):
    table = store.open_or_create_table(
        vector_db, "p", model=ENGLISH_MODEL, embed_batch_size=8, languages=languages
    )
    rows = [
        {
            "doc_id": doc_id,
            "root_id": doc_id,
            "passage": 0,
            "start": 0,
            "end": len(content),
            "content": content,
            "vector": [0.0] * 384,
            "language": "FRENCH",
            "tags": [],
        }
        for doc_id, content in FRENCH.items()
    ]
    store.replace_documents(table, list(FRENCH), rows)
    table.optimize()  # the rows in the index, analysed by it
    return table


def _ranked(table, query: str) -> list[str]:
    scores = search.text_scores(table, query, 10)
    best_first = sorted(scores, key=scores.__getitem__, reverse=True)
    rows = table.take_row_ids(best_first).with_row_id().to_list()
    by_row = {row["_rowid"]: row["doc_id"] for row in rows}
    return [by_row[row] for row in best_first]


# Forms the documents do not have: "cacher" (cachés), "retrouver" (retrouvé),
# "inaugurera" (inaugure).
INFLECTED = {"cacher": "d1", "retrouver": "d1", "inaugurera": "d2"}


@pytest.mark.parametrize(
    "languages", [{"FRENCH": 3}, {"FRENCH": 2, "GERMAN": 1, "SPANISH": 1}]
)
def test_a_french_document_is_found_by_an_inflected_french_query(vector_db, languages):
    table = _french_table(vector_db, languages)
    for query, doc_id in INFLECTED.items():
        assert _ranked(table, query)[:1] == [doc_id], query


def test_english_analysis_misses_french_inflections(vector_db):
    table = _french_table(vector_db, {"ENGLISH": 3})
    for query in INFLECTED:
        assert _ranked(table, query) == [], query


async def test_the_language_mix_comes_from_the_index(es, project):
    await create_project_index(es, project)
    languages = ["FRENCH", "FRENCH", "GERMAN"]
    docs = (
        (f"d{i}", document_source("texte", path=f"/d{i}", language=lang), None)
        for i, lang in enumerate(languages)
    )
    await bulk_index(es, project, docs)

    assert await documents.language_mix(es, project) == {
        "FRENCH": 2,
        "GERMAN": 1,
    }
