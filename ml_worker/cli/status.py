"""``ml-worker status``: are the services up, and what is vectorized."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from ml_worker.cli.errors import one_line
from ml_worker.cli.output import shown
from ml_worker.config import MLWorkerConfig
from ml_worker.engine import Check, QueueStatus, TaskEngine


async def check_services(
    engine: TaskEngine,
) -> tuple[list[Check], list[QueueStatus] | None]:
    """Every service checked at once (a service that does not answer costs its
    timeout once, not added to the others'), and the engine's task queues."""
    config = engine.config
    es, engine_checks, vector_store, queues = await asyncio.gather(
        check_es(config),
        engine.check(),
        asyncio.to_thread(_check_vector_store, config),
        engine.queues(),
    )
    return [es, *engine_checks, vector_store], queues


async def check_es(config: MLWorkerConfig) -> Check:
    from elasticsearch import AuthenticationException, AuthorizationException
    from elasticsearch import ConnectionError as ESConnectionError

    from ml_worker.es_client import es_client_from

    es = es_client_from(config)
    try:
        info = await es.info()
    except ESConnectionError as e:
        detail = f"unreachable ({e.__class__.__name__})"
        return Check("Elasticsearch", config.es_address, False, detail)
    except (AuthenticationException, AuthorizationException) as e:
        detail = f"refused access ({e.status_code})"
        return Check("Elasticsearch", config.es_address, False, detail)
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        return Check("Elasticsearch", config.es_address, False, one_line(e))
    finally:
        await es.close()
    version = info.get("version", {})
    server = version.get("distribution", "elasticsearch")
    return Check(
        "Elasticsearch", config.es_address, True, f"{server} {version.get('number')}"
    )


def _check_vector_store(config: MLWorkerConfig) -> Check:
    from ml_worker import store

    try:
        names = store.project_tables(store.connect_from(config))
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        return Check("vector store", config.vector_db_uri, False, one_line(e))
    return Check(
        "vector store", config.vector_db_uri, True, f"{len(names)} project tables"
    )


@dataclass(frozen=True)
class ProjectTable:
    project: str
    documents: int | None = None
    passages: int | None = None
    model: str | None = None  # its alias where it has one, and why it was chosen
    indexes: str | None = None
    error: str | None = None


def project_tables(config: MLWorkerConfig) -> list[ProjectTable]:
    from ml_worker import store

    db = store.connect_from(config)
    return [_describe_table(db, name) for name in store.project_tables(db)]


def _describe_table(db, name: str) -> ProjectTable:
    from ml_worker import store

    try:
        table = db.open_table(name)
        indexes = ", ".join(_index(i) for i in table.list_indices())
        return ProjectTable(
            project=name,
            documents=store.document_count(table),
            passages=table.count_rows(),
            model=_model(table),
            indexes=indexes or "none",
        )
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        return ProjectTable(project=name, error=one_line(e))


def _model(table) -> str:
    """The table's model and why it has it: ``multilingual (auto: 80% FRENCH, 20%
    ENGLISH)``."""
    from ml_worker import store
    from ml_worker.model_choice import alias

    model, choice = alias(store.table_model(table)), store.table_model_choice(table)
    return f"{model} ({choice})" if choice else model


def _index(index) -> str:
    """An index, with its analysis when it is the full-text one: ``content (FTS,
    French)``."""
    from ml_worker.text_analysis import describe

    kind = index.index_type
    if kind == "FTS":
        kind += f", {describe(getattr(index, 'index_details', None) or {})}"
    return f"{', '.join(index.columns)} ({kind})"


def services_table(checks: list[Check]) -> Table:
    table = Table(title="Services", title_justify="left")
    for column in ("service", "status", "where", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = (
            Text("up", style="green") if check.ok else Text("down", style="bold red")
        )
        table.add_row(check.service, status, shown(check.where), shown(check.detail))
    return table


def projects_table(tables: list[ProjectTable]) -> Table:
    table = Table(title="Vectorized projects", title_justify="left")
    for column in ("project", "documents", "passages", "model", "indexes"):
        right = column in ("documents", "passages")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for t in tables:
        # Table names and their metadata are the store's: shown, never markup.
        if t.error:
            table.add_row(
                shown(t.project), "", "", shown(f"unreadable: {t.error}", "red"), ""
            )
        else:
            table.add_row(
                shown(t.project),
                str(t.documents),
                str(t.passages),
                shown(t.model or ""),
                shown(t.indexes or ""),
            )
    if not tables:
        table.add_row("none yet", "", "", "", "")
    return table


def queues_table(queues: list[QueueStatus]) -> Table:
    table = Table(title="Task queues", title_justify="left")
    for column in ("workers", "queues", "taking tasks", "waiting", "running"):
        left = column in ("workers", "queues")
        table.add_column(column, justify="left" if left else "right")
    for q in queues:
        taking = Text("?") if q.workers is None else Text(str(q.workers))
        if q.workers == 0:
            taking.stylize("bold red")
        table.add_row(
            q.kind.value,
            ", ".join(q.queues),
            taking,
            _count(q.waiting),
            _count(q.running),
        )
    return table


def _count(value: int | None) -> str:
    return "" if value is None else str(value)
