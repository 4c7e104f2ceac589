"""The Datashare plugin's package, and what its code may never do; its behaviour is
tested in a real browser (tests/browser)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent.parent / "plugin"
SOURCES = sorted(PLUGIN.rglob("*.js"))

# What would turn a document's text into markup, or run it as code.
MARKUP_SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment"
    r"|DOMParser|srcdoc|\beval\(|new Function|v-html|template:"
)


def test_package_names_the_files_datashare_injects():
    package = json.loads((PLUGIN / "package.json").read_text())
    for field in ("main", "style"):
        assert (PLUGIN / package[field]).is_file(), field
    # Datashare loads a plugin for everyone unless it is private.
    assert package["private"] is False
    shipped = {PLUGIN / f for f in package["files"]}
    for path in [*SOURCES, PLUGIN / package["style"]]:
        assert any(path == s or s in path.parents for s in shipped), path


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_no_markup_is_ever_written(source):
    sinks = MARKUP_SINKS.findall(source.read_text())
    assert sinks == [], f"{source.name}: {sinks}"
