"""What the CLI prints: results on stdout, progress and errors on stderr.

rich colours output only on a terminal, so piped output stays plain text. Text that
comes from documents or from the task service (titles, paths, snippets, task ids,
arguments and errors) is hostile input: it is printed through ``shown``, so that a
terminal only ever displays it.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # importing icij_worker takes 2.5 s: every command would wait
    from icij_worker import Task, TaskState
    from icij_worker.objects import ErrorEvent

out = Console()
err = Console(stderr=True)

SNIPPET_CHARS = 200

# What a terminal may act on instead of displaying: C0 controls but tab and newline
# (ESC starts escape sequences, BEL ends OSC ones), DEL, C1 controls (U+009B is an
# 8-bit CSI), the marks, embeddings, overrides and isolates that reorder the text
# after them ("Trojan Source", CVE-2021-42574), and line and paragraph separators.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
    "\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """``text`` with every character a terminal may act on written as its escape,
    as Python writes it: ESC as ``\\x1b``, a right-to-left override as ``\\u202e``."""
    return _UNSAFE.sub(lambda c: c.group().encode("unicode_escape").decode(), text)


def shown(text: str, style: str = "") -> Text:
    """Remote text as the CLI prints it: ``printable``, and never read as markup."""
    return Text(printable(text), style=style)


def print_json(value: Any) -> None:
    """``value`` as JSON, its strings intact once parsed.

    JSON escapes C0 controls, not DEL, C1 or bidirectional controls: those are
    escaped here too (``\\u009b``), as JSON allows anywhere in a string.
    """
    dumped = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    escaped = _UNSAFE.sub(lambda c: f"\\u{ord(c.group()):04x}", dumped)
    # Plain write: rich would wrap long lines and colour the JSON.
    sys.stdout.write(escaped + "\n")


def hits_table(query: str, hits: list[dict]) -> Table:
    """Documents ranked for one query: rank, score, title (or path) and snippet."""
    table = Table(
        title=shown(f"“{query}”", style="bold"), title_justify="left", show_lines=True
    )
    table.add_column("#", justify="right", style="bold")
    table.add_column("score", justify="right")
    table.add_column("document", style="cyan", max_width=32)
    table.add_column("best passage", ratio=1)
    for rank, hit in enumerate(hits, start=1):
        table.add_row(
            str(rank),
            f"{hit['score']:.4f}",
            _document_label(hit),
            shown(snippet(hit["snippet"])),
        )
    if not hits:
        table.add_row("", "", "no match", "")
    return table


def similar_table(doc_id: str, hits: list[dict]) -> Table:
    """The documents most similar to one: rank, score, relation, title (or path),
    and the pair of passages that matched best."""
    table = Table(
        title=shown(f"Similar to {doc_id}", style="bold"),
        title_justify="left",
        show_lines=True,
    )
    table.add_column("#", justify="right", style="bold")
    table.add_column("score", justify="right")
    table.add_column("relation")
    table.add_column("document", style="cyan", max_width=32)
    table.add_column("its passage / the matched one", ratio=1)
    for rank, hit in enumerate(hits, start=1):
        passages = Text.assemble(
            shown(snippet(hit["snippet"])),
            "\n",
            shown(snippet(hit["source_snippet"]), style="dim"),
        )
        table.add_row(
            str(rank),
            f"{hit['score']:.4f}",
            shown(hit["relation"].replace("_", " ")),
            _document_label(hit),
            passages,
        )
    if not hits:
        table.add_row("", "", "", "no similar document", "")
    return table


def _document_label(hit: dict) -> Text:
    return shown(hit.get("title") or hit.get("path") or hit["doc_id"])


def snippet(text: str, max_chars: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    return text[: max_chars - 1].rsplit(" ", 1)[0] + "…"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
    )


def tasks_table(tasks: list[Task], *, total: int) -> Table:
    count = f"{len(tasks)} of {total}" if total > len(tasks) else str(total)
    table = Table(title=f"Tasks ({count})", title_justify="left")
    table.add_column("id", overflow="fold", ratio=1)
    table.add_column("project", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for task in tasks:
        state = _state(task.state)
        if task.state.value == "RUNNING" and task.progress is not None:
            state.append(f" {_progress(task.progress)}")
        project = (task.args or {}).get("project")
        table.add_row(
            shown(task.id),
            shown(project if isinstance(project, str) else ""),
            state,
            _time(task.created_at),
        )
    return table


def task_details(task: Task, errors: list[ErrorEvent]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", shown(task.id))
    table.add_row("name", shown(task.name))
    table.add_row("state", _state(task.state))
    table.add_row("progress", _progress(task.progress))
    table.add_row("created", _time(task.created_at))
    table.add_row("completed", _time(task.completed_at))
    for name, value in (task.args or {}).items():
        table.add_row(shown(f"args.{name}"), shown(_short(value)))
    for event in errors:
        error = event.error
        table.add_row("error", shown(f"{error.name}: {error.message}", style="red"))
    return table


_STATE_STYLES = {
    "DONE": "green",
    "ERROR": "bold red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
}


def _state(state: TaskState) -> Text:
    return Text(state.value, style=_STATE_STYLES.get(state.value, ""))


def _progress(progress: float | None) -> str:
    return "" if progress is None else f"{progress:.0%}"


def _time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _short(value: Any, max_items: int = 5) -> str:
    """An argument as JSON, long lists (a batch's document ids) cut short."""
    if isinstance(value, list) and len(value) > max_items:
        return f"{json.dumps(value[:max_items])[:-1]}, … ({len(value)} items)]"
    return json.dumps(value, ensure_ascii=False, default=str)
