"""How a project's full-text index analyses words, chosen from its language mix.

LanceDB's full-text index has one analysis for the whole table. A project whose
documents are nearly all in one language that LanceDB stems gets that language's
stemming and stop words: a French query's "mangent" then finds "mange". Any other
project gets an analysis that favours no language: words cut into their
three-letter pieces (n-grams), lower-cased, accents folded, so that inflected forms
share most of their pieces in any language.

Measured on the Debian descriptions set (600 documents in 6 languages, queries in
each document's language), BM25 MRR@10: 0.896 with each language's own stemming,
0.886 with n-grams of 3 letters (0.885 of 4), 0.879 with English stemming and stop
words, 0.874 with words neither stemmed nor dropped (docs/retrieval.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from lancedb.index import FTS

# Datashare's language names -> LanceDB's, for the languages it stems (checked
# with lancedb 0.40: Polish, for one, is refused).
STEMMED_LANGUAGES = {
    "ENGLISH": "English",
    "FRENCH": "French",
    "GERMAN": "German",
    "SPANISH": "Spanish",
    "PORTUGUESE": "Portuguese",
    "ITALIAN": "Italian",
    "DUTCH": "Dutch",
    "RUSSIAN": "Russian",
}
# Share of a project's documents in one language for its index to stem that
# language: the others' words are then only sometimes stemmed wrongly.
DOMINANT_SHARE = 0.9
# The analysis of a project of several languages, or of an unstemmed one.
NEUTRAL = FTS(
    base_tokenizer="ngram",
    ngram_min_length=3,
    ngram_max_length=3,
    stem=False,
    remove_stop_words=False,
    ascii_folding=True,
)


def analysis_for(languages: Mapping[str, int]) -> FTS:
    """The full-text analysis for a project with these document counts by
    language. A project without documents yet is analysed as today's default,
    English."""
    total = sum(languages.values())
    if not total:
        return FTS(language="English")
    language, count = max(languages.items(), key=lambda item: item[1])
    if count >= DOMINANT_SHARE * total and language in STEMMED_LANGUAGES:
        return FTS(language=STEMMED_LANGUAGES[language])
    return NEUTRAL


def describe(index_details: Mapping) -> str:
    """A full-text index's analysis in a few words: ``French``, ``n-grams``."""
    if index_details.get("base_tokenizer") == "ngram":
        return "n-grams"
    if index_details.get("stem"):
        return str(index_details.get("language", "English"))
    return "words"
