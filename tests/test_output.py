"""What the CLI prints of documents and tasks: their text, never a terminal's command.

A leaked document is hostile input: its title, path or text may hold escape
sequences, and so may a task's arguments and errors.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import UTC, datetime
from io import StringIO

import pytest
from icij_worker import Task, TaskError, TaskState
from icij_worker.objects import ErrorEvent
from rich.console import Console

from ml_worker.cli.errors import one_line
from ml_worker.cli.follow import describe
from ml_worker.cli.output import (
    hits_table,
    print_json,
    printable,
    task_details,
    tasks_table,
)
from ml_worker.cli.status import Check, ProjectTable, projects_table, services_table

# A colour, a screen clear, a window title (OSC ... BEL), NUL and friends, DEL, an
# 8-bit CSI and a C1 NEL, carriage return and backspace, right-to-left override
# and isolate, a line separator, and rich markup.
HOSTILE = (
    "\x1b[31mred\x1b[0m \x1b[2J \x1b]0;owned\x07 \x00\x01\x02\x7f"
    " \x9b1;31m \x85 a\rb\x08 \u202egnp.exe\u202c \u2066iso\u2069 \u2028"
    " [bold red]markup[/bold red]"
)
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def unsafe(text: str) -> list[str]:
    """The characters of ``text`` a terminal may act on, but newlines."""
    return [
        c
        for c in text
        if c != "\n" and (unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in BIDI)
    ]


def render(renderable, *, colour: bool = False) -> str:
    file = StringIO()
    console = Console(
        file=file,
        force_terminal=True,
        color_system="truecolor" if colour else None,
        width=300,
    )
    console.print(renderable)
    return file.getvalue()


def test_printable_writes_each_control_as_its_escape():
    assert printable(HOSTILE) == (
        "\\x1b[31mred\\x1b[0m \\x1b[2J \\x1b]0;owned\\x07 \\x00\\x01\\x02\\x7f"
        " \\x9b1;31m \\x85 a\\rb\\x08 \\u202egnp.exe\\u202c \\u2066iso\\u2069 \\u2028"
        " [bold red]markup[/bold red]"
    )
    # Text, accents, other scripts, tabs and newlines are left as they are.
    assert printable("Zoë, 東京, مرحبا\tend\n") == "Zoë, 東京, مرحبا\tend\n"


def _hit(**fields) -> dict:
    return {
        "doc_id": "d1",
        "score": 0.5,
        "snippet": "text",
        "title": None,
        "path": "/p",
        **fields,
    }


HITS = [
    _hit(title=HOSTILE[:40], snippet=HOSTILE),
    _hit(title=None, path=f"/leak/{HOSTILE[40:70]}", snippet=HOSTILE[::-1]),
    _hit(title="[red]T[/red]", snippet="[link=http://evil]click[/link]"),
]


@pytest.mark.parametrize("colour", [False, True])
def test_results_print_no_control_character(colour):
    output = render(hits_table(f"query {HOSTILE[:12]}", HITS), colour=colour)

    if colour:  # only rich's own styles: Select Graphic Rendition sequences
        output = re.sub(r"\x1b\[[0-9;]*m", "", output)
    assert unsafe(output) == []
    assert "\\x1b[31mred" in output
    assert "\\u202egnp.exe" in output
    # Markup is text: shown as typed, not styling anything.
    assert "[bold red]markup[/bold red]" in output
    assert "[red]T[/red]" in output
    assert "[link=http://evil]click[/link]" in output


def test_results_colour_is_rich_styles_alone():
    plain = render(hits_table("q", HITS))
    coloured = render(hits_table("q", HITS), colour=True)

    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _task(**fields) -> Task:
    return Task(
        id=f"find_most_similar-{HOSTILE[:20]}",
        name=f"find_{HOSTILE[20:40]}",
        args={
            "project": HOSTILE,
            "queries": [HOSTILE[::-1]],
            f"key{HOSTILE[:10]}": "x",
            "docs": [f"{HOSTILE[:8]}{i}" for i in range(8)],
        },
        state=TaskState.ERROR,
        created_at=NOW,
        **fields,
    )


def test_task_details_and_errors_print_no_control_character():
    error = TaskError(name=f"Error{HOSTILE[:6]}", message=f"bad title {HOSTILE}")
    event = ErrorEvent(
        task_id="t", created_at=NOW, retries_left=0, max_retries=0, error=error
    )

    output = render(task_details(_task(), [event]))

    assert unsafe(output) == []
    assert "bad title \\x1b[31mred" in output
    assert "args.key\\x1b[31mred" in output


def test_task_list_prints_no_control_character():
    output = render(tasks_table([_task(), _task()], total=3))

    assert unsafe(output) == []
    assert "find_most_similar-\\x1b[31mred" in output


def test_error_lines_quoting_documents_are_printable():
    error = TaskError(name="ValueError", message=f"no such document: {HOSTILE}")

    for line in (
        describe(error),
        one_line(RuntimeError(f"task t failed: {HOSTILE}\nmore")),
        one_line(RuntimeError(describe(error))),  # escaped once, not twice
    ):
        assert unsafe(line) == []
        assert "\\x1b[31mred" in line


def test_status_tables_print_no_control_character():
    checks = [Check("task service", f"http://{HOSTILE[:9]}", False, HOSTILE)]
    projects = [
        ProjectTable(project=HOSTILE[:20], error=HOSTILE),
        ProjectTable(HOSTILE[20:40], 1, 2, model=HOSTILE, indexes=HOSTILE[::-1]),
    ]

    output = render(services_table(checks)) + render(projects_table(projects))

    assert unsafe(output) == []


def test_json_gives_back_the_strings_and_prints_no_control_character(capsys):
    value = [{"title": f"Zoë {HOSTILE}", "path": HOSTILE[::-1], HOSTILE: 0.5}]

    print_json(value)

    output = capsys.readouterr().out
    assert unsafe(output) == []
    assert json.loads(output) == value
    assert "Zoë" in output  # not escaped to ASCII
