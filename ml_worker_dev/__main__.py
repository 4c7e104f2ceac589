"""``./ml-worker demo``: the commands that need a source checkout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ml_worker.cli.main import global_options, run

app = typer.Typer(
    name="ml-worker",
    help="ml-worker from a source checkout.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.callback()(global_options)


@app.command()
def demo(
    workers: Annotated[
        int, typer.Option("-n", "--workers", min=1, help="Vectorizing workers.")
    ] = 2,
    workdir: Annotated[
        Path,
        typer.Option(help="Work folder (logs, vectors), emptied first."),
    ] = Path(".ml-worker/demo"),
) -> None:
    """Vectorize and search a bundled sample corpus with real services: RabbitMQ and
    PostgreSQL must be running; Elasticsearch is the configured one if it answers, an
    emulator otherwise. Stops everything it started."""
    started = time.monotonic()  # the demo's own imports take a while: count them
    from ml_worker_dev.demo import run_demo

    run_demo(workdir=workdir, n_workers=workers, started=started)


if __name__ == "__main__":
    run(app)
