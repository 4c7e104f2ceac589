"""The benchmark set builders' parsing, on tiny pages and manuals (no download)."""

from __future__ import annotations

from bench.datasets import debian
from bench.datasets.info_nodes import manual_items
from bench.datasets.python_modules import module_item
from bench.datasets.python_sections import section_items

MODULE_PAGE = """<html><body><div class="sphinxsidebar">Navigation</div>
<div class="body" role="main">
<section id="module-json">
<h1><a class="reference internal" href="#module-json"
 title="json: Encode and decode the JSON format."><code>json</code></a>
 — JSON encoder and decoder<a class="headerlink" href="#module-json">¶</a></h1>
<p>JSON is a lightweight data interchange format.</p>
<script>var x = 1;</script>
<section id="basic-usage"><h2>Basic Usage<a class="headerlink" href="#b">¶</a></h2>
<dl><dt>json.dump(obj, fp)</dt><dd><p>Serialize <em>obj</em> to a file.</p></dd></dl>
</section></section></div>
<div class="footer">Copyright</div></body></html>"""

SECTIONS_PAGE = """<div class="body" role="main"><section id="faq">
<h1>Programming FAQ</h1><p>Intro of the page.</p>
<section id="a"><h2>1.2. General Questions</h2><p>Questions in general.</p>
<section id="b"><h3>How do I debug a program?</h3><p>Use pdb.</p></section>
</section></section></div>"""

INFO = """This is m4.info, produced by makeinfo.

\x1f
File: m4.info,  Node: Top,  Next: Intro,  Up: (dir)

GNU M4
******

The manual.

* Menu:

* Intro::                       Introduction to m4
* Macro Arguments::             Collecting arguments
                                  to macros
* Concept index::               Index of concepts

\x1f
File: m4.info,  Node: Intro,  Next: Macro Arguments,  Up: Top

1 Introduction
==============

'm4' is a macro processor.

\x1f
File: m4.info,  Node: Macro Arguments,  Prev: Intro,  Up: Top

1.1 Arguments
-------------

Arguments are collected.

* Menu:

* Nested:: Nested arguments

\x1f
File: m4.info,  Node: Concept index,  Up: Top

* a: Intro. (line 6)
"""


def test_a_module_page_is_found_by_its_synopsis_which_its_text_lacks():
    item = module_item("json", MODULE_PAGE)

    assert item is not None
    assert item.id == "python-module:json"
    assert item.query == "Encode and decode the JSON format."
    assert item.content == (
        "JSON is a lightweight data interchange format.\n\nBasic Usage\n"
        "json.dump(obj, fp)\n\nSerialize obj to a file."
    )


def test_a_page_without_a_module_has_no_item():
    assert module_item("intro", SECTIONS_PAGE) is None


def test_sections_are_found_by_their_heading_without_their_number():
    items = section_items("faq/programming", SECTIONS_PAGE)

    assert [(i.query, i.content) for i in items] == [
        ("General Questions", "Questions in general."),
        ("How do I debug a program?", "Use pdb."),
    ]


def test_info_nodes_are_found_by_their_menu_description_without_title_or_menu():
    items = {i.id: i for i in manual_items("m4", INFO)}

    assert set(items) == {"info:m4:Intro", "info:m4:Macro Arguments"}
    assert items["info:m4:Intro"].query == "Introduction to m4"
    assert items["info:m4:Intro"].content == "'m4' is a macro processor."
    arguments = items["info:m4:Macro Arguments"]
    assert arguments.query == "Collecting arguments to macros"
    assert arguments.content == "Arguments are collected."


def test_kept_items_are_long_unique_capped_and_sampled_the_same_way(monkeypatch):
    monkeypatch.setattr(debian, "MIN_WORDS", 2)
    monkeypatch.setattr(debian, "MAX_WORDS", 3)
    monkeypatch.setattr(debian, "MAX_DOCUMENTS", 3)
    items = [debian.Item(f"d{n}", f"query number {n}", "a b c d e") for n in range(6)]
    items += [
        debian.Item("short", "a long enough query", "a"),
        debian.Item("twin1", "Same query here", "a b c"),
        debian.Item("twin2", "same query here", "d e f"),
    ]

    kept = debian.kept(items)

    assert kept == debian.kept(reversed(items))
    assert len(kept) == 3
    assert all(i.id.startswith("d") and i.content == "a b c" for i in kept)


def test_one_word_queries_name_a_word_no_other_document_has():
    from bench.datasets.lone_words import EVERY, lone_word_items

    items = [
        {
            "id": f"d{i}",
            "query": "q",
            "content": f"shared words everywhere uniq{chr(97 + i)}xyz",
        }
        for i in range(2 * EVERY)
    ]
    # A second query of the first document (another kind): one document, once.
    items.insert(1, {**items[0], "query": "other", "kind": "cross-lingual"})

    lone = lone_word_items(items)

    # Every document once; every tenth asks for the word only it has.
    assert [i["id"] for i in lone] == [f"d{i}" for i in range(2 * EVERY)]
    assert [(i["id"], i["query"]) for i in lone if i["query"]] == [
        ("d0", "uniqaxyz"),
        (f"d{EVERY}", f"uniq{chr(97 + EVERY)}xyz"),
    ]
    assert all("kind" not in i for i in lone)
