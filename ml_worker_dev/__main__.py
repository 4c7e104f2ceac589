"""``./ml-worker demo|stack|load``: the commands that need a source checkout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ml_worker.cli.main import global_options, run
from ml_worker.config import EngineName

app = typer.Typer(
    name="ml-worker",
    help="ml-worker from a source checkout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(global_options)

Workers = Annotated[
    int, typer.Option("-n", "--workers", min=1, help="Vectorizing workers.")
]


@app.command()
def demo(
    workers: Workers = 2,
    workdir: Annotated[
        Path,
        typer.Option(help="Work folder (logs, vectors), emptied first."),
    ] = Path(".ml-worker/demo"),
    engine: Annotated[
        EngineName,
        typer.Option(
            help="Task engine: icij-worker over RabbitMQ, or a Temporal development"
            " server started by the demo."
        ),
    ] = EngineName.ICIJ,
) -> None:
    """Vectorize and search a bundled sample corpus with real services: RabbitMQ and
    PostgreSQL must be running (icij engine); Elasticsearch is the configured one if
    it answers, an emulator otherwise. Stops everything it started."""
    started = time.monotonic()  # the demo's own imports take a while: count them
    from ml_worker_dev.demo import run_demo

    run_demo(workdir=workdir, n_workers=workers, engine=engine, started=started)


@app.command()
def stack(
    workers: Workers = 1,
    workdir: Annotated[
        Path, typer.Option(help="Work folder: logs, vectors, the settings file.")
    ] = Path(".ml-worker/stack"),
) -> None:
    """Run Elasticsearch (the configured one, or an emulator), the task service and a
    worker pool until Ctrl-C, and write the settings that point the CLI at them to
    WORKDIR/env. RabbitMQ and PostgreSQL must be running."""
    from ml_worker_dev.stack import run_stack

    run_stack(workdir=workdir, n_workers=workers)


@app.command()
def load(
    folder: Annotated[
        Path, typer.Argument(show_default=False, help="Folder of text files.")
    ],
    project: Annotated[
        str, typer.Option(show_default=False, help="Project (index) to load into.")
    ],
) -> None:
    """Index every text file under FOLDER as a document of PROJECT, laid out as
    Datashare indexes documents, in the configured Elasticsearch
    (ML_WORKER_ES_ADDRESS). Loading a folder again updates its documents."""
    from ml_worker.config import MLWorkerConfig
    from ml_worker_dev.stack import load_folder, report_load

    indexed, skipped = load_folder(folder, project, MLWorkerConfig())
    report_load(folder, project, indexed, skipped)


CHECKOUT_INTRO = """\
# From a checkout: `./ml-worker`

`./ml-worker` is the checkout's entry point. It installs what it needs first (uv
when missing, then the locked environment), then:

| command | what it does |
|---|---|
| `./ml-worker test [PYTEST ARGS...]` | the quality gates (ruff, mypy) and the test suite, tier by tier; with arguments, pytest with them |
| `./ml-worker demo` | the whole pipeline on a bundled sample corpus (below) |
| `./ml-worker stack`, `./ml-worker load` | ml-worker on this machine, for your own documents (below) |
| `./ml-worker up`, `down`, `ps`, `logs`... | Docker Compose's own commands, passed to `docker compose` |
| `./ml-worker COMMAND...` | any other word: the `ml-worker` command line above |
"""


@app.command(hidden=True)
def docs() -> None:
    """Print the CLI reference page (docs/cli.md): ``ml-worker``'s commands, then
    the checkout's."""
    import sys

    from ml_worker.cli.docs import render
    from ml_worker.cli.main import app as cli_app

    page = (
        render(cli_app) + "\n" + render(app, prog="./ml-worker", intro=CHECKOUT_INTRO)
    )
    sys.stdout.write(page)


if __name__ == "__main__":
    run(app)
