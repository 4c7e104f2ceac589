"""``ml-worker status``: are the services up, and what is vectorized."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import ValidationError
from rich.table import Table
from rich.text import Text

from ml_worker.broker import QueueStats, RabbitMQ, RabbitMQSettings
from ml_worker.cli.errors import one_line
from ml_worker.cli.output import shown
from ml_worker.config import Engine, MLWorkerConfig
from ml_worker.constants import WorkerKind
from ml_worker.exceptions import BrokerUnreachable


@dataclass(frozen=True)
class Check:
    service: str
    where: str
    ok: bool
    detail: str


def rabbitmq_from_env() -> RabbitMQ:
    """RabbitMQ as icij-worker's workers see it (``ICIJ_WORKER_RABBITMQ_*``)."""
    return RabbitMQSettings().broker()


def task_queues_from_env() -> dict[WorkerKind, QueueStats] | None:
    """Each kind of worker's task queue in the RabbitMQ virtual host icij-worker's
    settings name; None when those settings or the management API do not tell."""
    try:
        settings = RabbitMQSettings()
        rabbitmq = settings.broker()
        return {
            kind: rabbitmq.task_queue(settings.rabbitmq_vhost, kind.group, quoted=True)
            for kind in WorkerKind
        }
    except (ValidationError, httpx.HTTPError, ValueError):
        return None


def task_queue_consumers_from_env() -> Callable[[str], int | None]:
    """Counts the workers consuming a task group's queue in the RabbitMQ virtual host
    icij-worker's settings name (``ICIJ_WORKER_RABBITMQ_*``, vhost included); the
    count is None when those settings or the management API do not tell."""
    try:
        settings = RabbitMQSettings()
    except ValidationError:
        return lambda group: None
    rabbitmq = settings.broker()

    def consumers(group: str) -> int | None:
        try:
            return rabbitmq.task_queue_consumers(
                settings.rabbitmq_vhost, group, quoted=True
            )
        except (httpx.HTTPError, ValueError):
            return None

    return consumers


async def check_services(config: MLWorkerConfig) -> list[Check]:
    """Every service checked at once: a service that does not answer costs its
    timeout once, not added to the others'."""
    if config.engine is Engine.TEMPORAL:
        checks = [check_es(config), _check_temporal(config)]
    else:
        checks = [
            check_es(config),
            asyncio.to_thread(_check_rabbitmq),
            _check_task_service(config),
        ]
    checks.append(asyncio.to_thread(_check_vector_store, config))
    return list(await asyncio.gather(*checks))


async def check_es(config: MLWorkerConfig) -> Check:
    from elasticsearch import AuthenticationException, AuthorizationException
    from elasticsearch import ConnectionError as ESConnectionError

    from ml_worker.clients import es_client_from

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


def _check_rabbitmq() -> Check:
    rabbitmq = rabbitmq_from_env()
    where = f"{rabbitmq.host}:{rabbitmq.port}, management {rabbitmq.management_url}"
    try:
        rabbitmq.check()
    except BrokerUnreachable as e:
        return Check("RabbitMQ", where, False, str(e))
    return Check("RabbitMQ", where, True, "broker and management API answer")


async def _check_task_service(config: MLWorkerConfig) -> Check:
    from ml_worker.clients import task_client_from

    where = f"{config.task_service_url} ({config.task_service.value})"
    try:
        async with task_client_from(config) as client:
            await client.check()
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        return Check("task service", where, False, one_line(e))
    return Check("task service", where, True, "answers")


async def temporal_status(
    config: MLWorkerConfig,
) -> tuple[Check, dict[WorkerKind, tuple[int, int]] | None]:
    """Whether the Temporal server answers, and how many workers poll each kind's
    task queue for workflows and for activities (None when it does not answer)."""
    from ml_worker.exceptions import MissingSearchAttributes
    from ml_worker.temporal.client import check_search_attributes, connect, pollers

    where = f"{config.temporal_address}, namespace {config.temporal_namespace}"
    try:
        client = await connect(config)
        await check_search_attributes(client)
        polling = {
            kind: (
                len(await pollers(client, kind.group, activities=False)),
                len(await pollers(client, kind.group, activities=True)),
            )
            for kind in WorkerKind
        }
    except MissingSearchAttributes as e:
        return Check("Temporal", where, False, str(e)), None
    except Exception as e:  # noqa: BLE001  # reported, whatever it is
        return Check("Temporal", where, False, one_line(e)), None
    return Check("Temporal", where, True, "answers"), polling


async def _check_temporal(config: MLWorkerConfig) -> Check:
    check, _ = await temporal_status(config)
    return check


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
            # A document's first passage (0, or the one row of a document
            # without text): counted without reading every doc_id, which took
            # 11 s and 2.5 GiB at 10 M rows.
            documents=table.count_rows(f"{store.PASSAGE} <= 0"),
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


def temporal_queues_table(polling: dict[WorkerKind, tuple[int, int]]) -> Table:
    table = Table(title="Temporal task queues", title_justify="left")
    for column in ("workers", "task queue", "polling workflows", "polling activities"):
        left = column in ("workers", "task queue")
        table.add_column(column, justify="left" if left else "right")
    for kind, (workflows, activities) in polling.items():
        shown_count = Text(str(activities), style="" if activities else "bold red")
        table.add_row(kind.value, kind.group, str(workflows), shown_count)
    return table


def queues_table(queues: dict[WorkerKind, QueueStats]) -> Table:
    table = Table(title="Task queues", title_justify="left")
    for column in ("workers", "queue", "consuming", "waiting", "running"):
        left = column in ("workers", "queue")
        table.add_column(column, justify="left" if left else "right")
    for kind, q in queues.items():
        consuming = (
            Text(str(q.consumers)) if q.consumers else Text("0", style="bold red")
        )
        table.add_row(kind.value, q.queue, consuming, str(q.waiting), str(q.running))
    return table
