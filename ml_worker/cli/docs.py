"""The CLI's reference page, made from the commands' own ``--help``.

``render`` lays out one command line's commands; a checkout's ``./ml-worker docs``
puts ``ml-worker``'s and its own on one page (``python -m ml_worker_dev docs >
docs/cli.md`` rewrites it; a test fails when the page and the help have drifted
apart).
"""

from __future__ import annotations

import click
import typer
from typer.testing import CliRunner

# Help is laid out for this width, as in a pipe or an 80-column terminal.
WIDTH = 80

INTRO = """\
# Command line

`ml-worker` vectorizes Datashare projects, searches them and follows the tasks
that do the work. It submits tasks through the configured task API
(`ML_WORKER_TASK_SERVICE`, `ML_WORKER_TASK_SERVICE_URL`: icij-worker's task service
or Datashare's), so the workers may run on other machines. Other settings come from
the same `ML_WORKER_*` variables as the workers' (`ML_WORKER_ES_ADDRESS`,
`ML_WORKER_VECTOR_DB_URI`...), and RabbitMQ's from `ICIJ_WORKER_RABBITMQ_*`.

From a checkout, `./ml-worker COMMAND` runs it in the project's environment.

Errors are one line on stderr (the stack trace with `--debug`) and an exit code:

| code | meaning |
|-----:|---------|
| 0 | done |
| 1 | a task failed or did not complete |
| 2 | bad arguments or settings |
| 3 | a service is down or refuses access |
| 4 | unknown project, task or model |
| 5 | the task's user is not granted the project |
| 130 | interrupted (Ctrl-C) |

Titles, paths and snippets of documents, and the names, arguments and errors of
tasks, may hold anything a leaked document or another client of the task service
put there. The CLI prints them as text: control characters, terminal escape
sequences and bidirectional controls appear as escapes (`\\x1b[2J`, `\\u202e`), and
square brackets never turn into styling. `--json` gives back the strings intact
once parsed: beside the control characters JSON escapes, it escapes DEL, C1
controls and bidirectional controls too (`\\u009b`).

This page is generated from the commands' `--help`:
`python -m ml_worker_dev docs > docs/cli.md`.
"""


def command_paths(app: typer.Typer) -> list[list[str]]:
    """Every visible command as the words that invoke it, the root first."""
    paths: list[list[str]] = []

    def walk(command: click.Command, path: list[str]) -> None:
        paths.append(path)
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                if not sub.hidden:
                    walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def help_text(app: typer.Typer, path: list[str]) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    if result.exit_code != 0:
        raise RuntimeError(
            f"`ml-worker {' '.join(path)} --help` failed: {result.output}"
        )
    return normalize(result.output)


def normalize(help_output: str) -> str:
    """Help without the padding rich adds at line ends and around it."""
    return "\n".join(line.rstrip() for line in help_output.splitlines()).strip("\n")


def render(app: typer.Typer, *, prog: str = "ml-worker", intro: str = INTRO) -> str:
    """``intro``, then the help of each of ``app``'s commands, run as ``prog``."""
    sections = [intro]
    for path in command_paths(app):
        title = " ".join([prog, *path])
        sections.append(f"## `{title}`\n\n```text\n{help_text(app, path)}\n```\n")
    return "\n".join(sections)
