"""Which model a project's table gets under ``auto``, and the reason given."""

from __future__ import annotations

import pytest

from ml_worker.constants import ENGLISH_MODEL, MULTILINGUAL_MODEL
from ml_worker.model_choice import alias, choose_model, described_mix


@pytest.mark.parametrize(
    ("languages", "model"),
    [
        ({"ENGLISH": 90, "FRENCH": 10}, "english"),
        ({"ENGLISH": 89, "FRENCH": 11}, "multilingual"),
        ({"FRENCH": 100}, "multilingual"),
        # Nearly all in one language other than English: still not English.
        ({"GERMAN": 95, "ENGLISH": 5}, "multilingual"),
        ({}, "english"),
    ],
)
def test_auto_follows_the_share_of_english_documents(languages, model):
    assert choose_model("auto", languages).model == model


def test_auto_says_which_languages_it_chose_from():
    choice = choose_model("auto", {"FRENCH": 62, "ENGLISH": 30, "GERMAN": 5, "X": 3})
    assert choice.reason == "auto: 62% FRENCH, 30% ENGLISH, 5% GERMAN, 3% other"
    empty = choose_model("auto", {})
    assert empty.reason == "no documents to tell the languages by"


def test_auto_keeps_the_model_of_an_existing_table():
    # A project that became mostly French keeps its vectors' model: changing it
    # means rebuilding the table.
    choice = choose_model("auto", {"FRENCH": 100}, existing=ENGLISH_MODEL)
    assert choice.model == "english"
    assert choice.reason == "the project's table was created with it"


def test_a_named_model_is_kept_whatever_the_languages():
    named = choose_model("english", {"FRENCH": 100})
    assert (named.model, named.reason) == ("english", "named by the task")
    default = choose_model(MULTILINGUAL_MODEL, {"ENGLISH": 1}, named=False)
    assert (default.model, default.reason) == (
        "multilingual",
        "the workers' default model",
    )
    hub = choose_model("intfloat/multilingual-e5-base", {})
    assert hub.model == "intfloat/multilingual-e5-base"


def test_aliases_name_packaged_models_by_their_short_name():
    assert alias(ENGLISH_MODEL) == alias("english") == "english"
    assert alias(MULTILINGUAL_MODEL) == "multilingual"
    assert alias("/models/my-model") == "/models/my-model"


def test_shares_never_round_to_all_or_nothing():
    assert described_mix({"ENGLISH": 999, "FRENCH": 1}) == ">99% ENGLISH, <1% FRENCH"
