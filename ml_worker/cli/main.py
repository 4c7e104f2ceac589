"""The ``ml-worker`` command line: vectorize projects, search them, manage tasks and
workers, check the services, and run the demo.

It talks to the workers through the configured task API (``ML_WORKER_TASK_SERVICE*``),
exactly as Datashare does. Heavy modules are imported by the commands that need them,
so that ``--help`` and usage errors answer at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import click
import typer

from ml_worker.cli.errors import CLIError, ExitCode, exit_code_for, one_line
from ml_worker.cli.output import err, out, print_json, printable, shown
from ml_worker.constants import SearchMode, WorkerKind

# Progress in a log: a line this often by default, and when the run ends.
PROGRESS_LINE_EVERY_S = 30.0

T = TypeVar("T")

app = typer.Typer(
    name="ml-worker",
    help="Semantic search for Datashare projects: vectorize, search, follow tasks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
tasks_app = typer.Typer(help="List, inspect and cancel tasks.", no_args_is_help=True)
workers_app = typer.Typer(help="Run worker processes.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(workers_app, name="workers")

_debug = False


@app.callback()
def global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the stack trace of errors.")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _config():
    from ml_worker.config import MLWorkerConfig

    return MLWorkerConfig()


def _engine():
    from ml_worker.engines import engine_for

    return engine_for(_config())  # settings errors first, before the slow imports


def _with_client(use: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``use(task_client)`` with the configured engine's task client."""
    engine = _engine()

    async def run() -> T:
        async with engine.task_client() as client:
            return await use(client)

    return asyncio.run(run())


def _documents_in(project: str) -> int | None:
    """How many documents the project's index holds, to show a run's progress in
    documents; None when Elasticsearch does not tell."""
    from ml_worker.documents import count_documents
    from ml_worker.es_client import es_client_from
    from ml_worker.exceptions import MLWorkerError

    async def count() -> int | None:
        es = es_client_from(_config())
        try:
            return await count_documents(es, project, retry_s=0)
        except MLWorkerError:
            return None
        finally:
            await es.close()

    return asyncio.run(count())


@app.command()
def vectorize(
    project: Annotated[
        str,
        typer.Argument(show_default=False, help="Datashare project (its index name)."),
    ],
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            show_default=False,
            help="Documents per batch task [default: the workers'].",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            show_default=False,
            help="Model of a new project table: auto (from its languages), english,"
            " multilingual, or a sentence-transformers id or folder"
            " [default: the workers', auto].",
        ),
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Drop the project's vectors and embed every document again; otherwise"
            " only new and changed documents are embedded.",
        ),
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Print the task id and return at once.")
    ] = False,
    progress_every: Annotated[
        float,
        typer.Option(
            "--progress-every",
            min=1.0,
            metavar="SECONDS",
            help="Seconds between progress lines when stderr is not a terminal (a"
            " log, a pipe); on a terminal, a progress bar.",
        ),
    ] = PROGRESS_LINE_EVERY_S,
) -> None:
    """Vectorize a project's documents, following the run until every batch is done."""
    from ml_worker.cli.follow import (
        follow_vectorization,
        print_vectorization_summary,
        submit_vectorization,
    )

    task_id = _with_client(
        lambda client: submit_vectorization(
            client, project, batch_size=batch_size, model=model, rebuild=rebuild or None
        )
    )
    if no_wait:
        out.print(shown(task_id))
        return
    err.print(shown(f"Task {task_id} submitted."))
    total = _documents_in(project)
    try:
        run = _with_client(
            lambda client: follow_vectorization(
                client,
                task_id,
                project,
                total=total,
                workers=_engine().workers,
                line_every_s=progress_every,
            )
        )
    except KeyboardInterrupt:
        raise CLIError(
            f"stopped following {task_id}, which goes on: see `ml-worker tasks show"
            f" {task_id}`, stop it with `ml-worker tasks cancel {task_id}`",
            ExitCode.INTERRUPTED,
        ) from None
    print_vectorization_summary(run)


ProjectArgument = Annotated[
    str, typer.Argument(show_default=False, help="Datashare project (its index name).")
]
Languages = Annotated[
    list[str] | None,
    typer.Option(
        "--lang",
        show_default=False,
        help="Only documents in this language (e.g. ENGLISH); repeatable.",
    ),
]
ContentTypes = Annotated[
    list[str] | None,
    typer.Option(
        "--content-type",
        show_default=False,
        help="Only documents of this type (e.g. application/pdf); repeatable.",
    ),
]
PathPrefix = Annotated[
    str | None,
    typer.Option(
        "--path-prefix", show_default=False, help="Only documents under this path."
    ),
]
Tags = Annotated[
    list[str] | None,
    typer.Option(
        "--tag", show_default=False, help="Only documents with this tag; repeatable."
    ),
]
MinScore = Annotated[
    float | None,
    typer.Option(
        "--min-score",
        show_default=False,
        help="Leave out documents scoring less (0 to 1).",
    ),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Print the task's raw result as JSON.")
]


@app.command()
def search(
    project: ProjectArgument,
    queries: Annotated[
        list[str],
        typer.Argument(
            show_default=False,
            help="One or more queries, each in quotes.",
            metavar="QUERY...",
        ),
    ],
    n: Annotated[
        int, typer.Option("-n", "--n-similar", min=1, help="Documents per query.")
    ] = 10,
    mode: Annotated[
        SearchMode,
        typer.Option(
            help="hybrid: meaning and words, fused; vector: meaning only;"
            " text: words only (BM25)."
        ),
    ] = SearchMode.HYBRID,
    languages: Languages = None,
    content_types: ContentTypes = None,
    path_prefix: PathPrefix = None,
    tags: Tags = None,
    min_score: MinScore = None,
    as_json: AsJson = False,
) -> None:
    """Find the documents of a project most relevant to each query."""
    from ml_worker.cli.follow import search_project
    from ml_worker.cli.output import hits_table

    filters = {
        "languages": languages,
        "content_types": content_types,
        "path_prefix": path_prefix,
        "tags": tags,
        "min_score": min_score,
    }
    results = _with_client(
        lambda client: search_project(
            client,
            project,
            queries,
            workers=_engine().workers,
            n_similar=n,
            mode=mode.value,
            **filters,
        )
    )
    if as_json:
        print_json(results)
        return
    for query, hits in zip(queries, results, strict=True):
        out.print(hits_table(query, hits))


@app.command()
def similar(
    project: ProjectArgument,
    doc_id: Annotated[
        str,
        typer.Argument(
            show_default=False, help="The document's id in the project's index."
        ),
    ],
    n: Annotated[
        int, typer.Option("-n", "--n-similar", min=1, help="Documents shown.")
    ] = 10,
    languages: Languages = None,
    content_types: ContentTypes = None,
    path_prefix: PathPrefix = None,
    tags: Tags = None,
    min_score: MinScore = None,
    as_json: AsJson = False,
) -> None:
    """Find the documents of a project most similar to one of its documents, from
    its vectors: near-duplicates and translations are marked as such."""
    from ml_worker.cli.follow import similar_documents
    from ml_worker.cli.output import similar_table

    hits = _with_client(
        lambda client: similar_documents(
            client,
            project,
            doc_id,
            workers=_engine().workers,
            n_similar=n,
            languages=languages,
            content_types=content_types,
            path_prefix=path_prefix,
            tags=tags,
            min_score=min_score,
        )
    )
    if as_json:
        print_json(hits)
        return
    out.print(similar_table(doc_id, hits))


@tasks_app.command("list")
def tasks_list(
    project: Annotated[
        str | None,
        typer.Option(
            "-p", "--project", show_default=False, help="Only tasks of this project."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", show_default=False, help="Only tasks of this name."),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            show_default=False,
            help="Only tasks in this state (QUEUED, RUNNING, DONE...).",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("-n", "--limit", min=1, help="Most recent tasks shown.")
    ] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print them as JSON.")
    ] = False,
) -> None:
    """List the most recent tasks, newest first, with their project."""
    from icij_worker import TaskState

    from ml_worker.cli.output import tasks_table

    states = [s.value for s in TaskState]
    if state is not None and state.upper() not in states:
        msg = f"unknown state {state!r}: one of {', '.join(states)}"
        raise CLIError(msg, ExitCode.USAGE)
    tasks = _with_client(lambda client: client.get_tasks(name=name))
    # Filtered here too: icij-worker's task service ignores the name.
    tasks = [
        t
        for t in tasks
        if (name is None or t.name == name)
        and (state is None or t.state.value == state.upper())
        and (project is None or (t.args or {}).get("project") == project)
    ]
    tasks.sort(key=lambda t: t.created_at, reverse=True)
    if as_json:
        print_json([t.model_dump(mode="json", warnings=False) for t in tasks[:limit]])
        return
    out.print(tasks_table(tasks[:limit], total=len(tasks)))


TaskId = Annotated[
    str, typer.Argument(show_default=False, help="The task's id.", metavar="TASK_ID")
]


@tasks_app.command("show")
def tasks_show(
    task_id: TaskId,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the task and its errors as JSON.")
    ] = False,
) -> None:
    """Show a task: state, progress, arguments and errors."""
    from icij_worker import TaskState

    from ml_worker.cli.output import task_details

    async def show(client):
        task = await _get_task(client, task_id)
        failed = task.state is TaskState.ERROR
        errors = await client.get_task_errors(task_id) if failed else []
        return task, errors

    task, errors = _with_client(show)
    if as_json:
        dumped = [m.model_dump(mode="json", warnings=False) for m in (task, *errors)]
        print_json({**dumped[0], "errors": dumped[1:]})
        return
    out.print(task_details(task, errors))


@tasks_app.command("result")
def tasks_result(task_id: TaskId) -> None:
    """Print a done task's result as JSON."""
    from icij_worker import TaskState

    from ml_worker.cli.follow import raise_if_failed

    async def result(client):
        task = await _get_task(client, task_id)
        await raise_if_failed(client, task)
        if task.state is not TaskState.DONE:
            raise CLIError(
                f"task {task_id} is {task.state.value}: it has no result yet"
            )
        return await client.get_task_result(task_id)

    print_json(_with_client(result))


@tasks_app.command("cancel")
def tasks_cancel(task_id: TaskId) -> None:
    """Cancel a queued or running task."""
    from icij_worker.objects import READY_STATES

    async def cancel(client):
        task = await _get_task(client, task_id)
        if task.state in READY_STATES:
            raise CLIError(
                f"task {task_id} is already {task.state.value}: nothing to cancel"
            )
        await client.cancel_task(task_id)

    _with_client(cancel)
    out.print(shown(f"Cancellation of {task_id} requested."))


async def _get_task(client, task_id: str):
    from ml_worker.exceptions import UnknownTask

    try:
        return await client.get_task(task_id)
    except UnknownTask as e:
        raise CLIError(f"unknown task {task_id}: {e}", ExitCode.NOT_FOUND) from e


@workers_app.command("start")
def workers_start(
    n: Annotated[
        int, typer.Option("-n", "--n-workers", min=1, help="Worker processes.")
    ] = 1,
    config: Annotated[
        Path | None,
        typer.Option(
            "-c",
            "--config",
            show_default=False,
            exists=True,
            dir_okay=False,
            help="icij-worker WorkerConfig JSON file [default: from ICIJ_WORKER_*"
            " variables]; with ML_WORKER_ENGINE=temporal, ml-worker's settings file"
            " [default: from ML_WORKER_* variables].",
        ),
    ] = None,
    kind: Annotated[
        WorkerKind | None,
        typer.Option(
            "-k",
            "--kind",
            show_default=False,
            help="Run N workers of this kind only [default: N vectorize workers,"
            " one search worker and one fanout worker].",
        ),
    ] = None,
) -> None:
    """Run worker processes in the foreground, restarting any that exits.

    Each kind of worker consumes its own task queue: `vectorize` workers compute
    the vectors of batches (they load the model), `search` workers answer searches
    and `fanout` workers split a project into batches (both light). Searches and
    fan-outs therefore never wait behind batches. On several hosts, run the kinds
    where they fit: e.g. `--kind vectorize -n 4` on a GPU host.

    With ML_WORKER_ENGINE=temporal the workers are Temporal workers, each polling
    its kind's task queue on the Temporal server (ML_WORKER_TEMPORAL_ADDRESS).

    A worker that exits (killed, out of memory, RabbitMQ lost) is started again
    after 1 s, then 2, 4... up to 30 s while it keeps exiting. Ctrl-C or SIGTERM
    stops them all within 10 s.
    """
    from ml_worker.pool import run_pool

    run_pool(n, kind=kind, config=config)


@app.command()
def status() -> None:
    """Check Elasticsearch, RabbitMQ, the task service and the vector store (with
    ML_WORKER_ENGINE=temporal: Elasticsearch, the Temporal server and the vector
    store); show each task queue's workers, and the vectorized projects. Exits with
    3 when a service is down."""
    from ml_worker.cli.status import (
        check_services,
        project_tables,
        projects_table,
        queues_table,
        services_table,
    )

    engine = _engine()
    checks, queues = asyncio.run(check_services(engine))
    out.print(services_table(checks))
    if queues is not None:
        out.print(queues_table(queues))
    if all(c.ok for c in checks if c.service == "vector store"):
        out.print(projects_table(project_tables(engine.config)))
    down = [c.service for c in checks if not c.ok]
    if down:
        raise CLIError(f"down: {', '.join(down)}", ExitCode.UNREACHABLE)


def main(argv: list[str] | None = None) -> NoReturn:
    run(app, argv)


def run(typer_app: typer.Typer, argv: list[str] | None = None) -> NoReturn:
    """Run a command of ``typer_app``: errors are one printable line on stderr and an
    exit code per kind of failure; ``--debug`` adds the stack trace."""
    command = typer.main.get_command(typer_app)
    try:
        code = command.main(args=argv, prog_name="ml-worker", standalone_mode=False)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        _fail(e)
    # typer turns Ctrl-C into this exit code, silently.
    if code == ExitCode.INTERRUPTED:
        err.print("ml-worker: interrupted")
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _fail(error: Exception) -> NoReturn:
    if _debug:
        _print_traceback(error)
    err.print(
        shown(f"ml-worker: error: {one_line(error, hint=not _debug)}"), soft_wrap=True
    )
    sys.exit(exit_code_for(error))


def _print_traceback(error: Exception) -> None:
    """rich's traceback of ``error``, its messages printable: they may quote
    documents or a server's answer."""
    from rich.traceback import Traceback

    traceback = Traceback.from_exception(type(error), error, error.__traceback__)
    for stack in traceback.trace.stacks:
        stack.exc_value = printable(stack.exc_value)
        stack.notes = [printable(note) for note in stack.notes]
    err.print(traceback)
