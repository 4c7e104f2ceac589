"""What the CLI prints: results on stdout, progress and errors on stderr.

rich colours output only on a terminal, so piped output stays plain text.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

from icij_worker import Task, TaskState
from icij_worker.objects import ErrorEvent
from rich.console import Console
from rich.table import Table
from rich.text import Text

out = Console()
err = Console(stderr=True)

SNIPPET_CHARS = 200


def print_json(value: Any) -> None:
    # Plain print: rich would wrap long lines and colour the JSON.
    sys.stdout.write(
        json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"
    )


def hits_table(query: str, hits: list[dict]) -> Table:
    """Documents ranked for one query: rank, score, title (or path) and snippet."""
    table = Table(
        title=Text(f"“{query}”", style="bold"), title_justify="left", show_lines=True
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
            Text(snippet(hit["snippet"])),
        )
    if not hits:
        table.add_row("", "", "no match", "")
    return table


def _document_label(hit: dict) -> Text:
    return Text(hit.get("title") or hit.get("path") or hit["doc_id"])


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
    shown = f"{len(tasks)} of {total}" if total > len(tasks) else str(total)
    table = Table(title=f"Tasks ({shown})", title_justify="left")
    table.add_column("id", overflow="fold", ratio=1)
    table.add_column("state", no_wrap=True)
    table.add_column("created", no_wrap=True)
    for task in tasks:
        state = _state(task.state)
        if task.state is TaskState.RUNNING and task.progress is not None:
            state.append(f" {_progress(task.progress)}")
        table.add_row(Text(task.id), state, _time(task.created_at))
    return table


def task_details(task: Task, errors: list[ErrorEvent]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("id", Text(task.id))
    table.add_row("name", Text(task.name))
    table.add_row("state", _state(task.state))
    table.add_row("progress", _progress(task.progress))
    table.add_row("created", _time(task.created_at))
    table.add_row("completed", _time(task.completed_at))
    for name, value in (task.args or {}).items():
        table.add_row(f"args.{name}", Text(_short(value)))
    for event in errors:
        error = event.error
        table.add_row("error", Text(f"{error.name}: {error.message}", style="red"))
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
