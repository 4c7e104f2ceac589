"""``./ml-worker stack`` and ``./ml-worker load``: ml-worker on this machine, for
trying it on your own documents.

``stack`` runs what the workers need beside RabbitMQ and PostgreSQL (Elasticsearch
or its emulator, icij-worker's task service, a worker pool) until Ctrl-C, and writes
the settings that point the CLI at them. ``load`` indexes a folder of files into a
project the way Datashare lays one out, so that the CLI can vectorize and search it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import mimetypes
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from ml_worker.cli.errors import CLIError, ExitCode
from ml_worker.cli.output import err, out, shown
from ml_worker.cli.status import check_es
from ml_worker.config import MLWorkerConfig, TaskServiceKind
from ml_worker.es_client import es_client_from
from ml_worker_dev import datashare_index
from ml_worker_dev.local_stack import (
    Postgres,
    RabbitMQ,
    environment,
    es_emulator,
    rabbitmq_from_env,
    task_stack,
    worker_pool,
)

# Bytes read to tell text from binary: a NUL byte there means binary.
_SNIFF_BYTES = 8192


@contextmanager
def elasticsearch(config: MLWorkerConfig) -> Iterator[str]:
    """The configured Elasticsearch if it answers, else an emulator of its API."""
    check = asyncio.run(check_es(config))
    if check.ok:
        out.print(f"Elasticsearch at {config.es_address}: {check.detail}.")
        yield config.es_address
        return
    if importlib.util.find_spec("osmem_server") is None:
        msg = (
            f"no Elasticsearch at {config.es_address} ({check.detail}), and its"
            " emulator (the osmem-server package, a development dependency) is not"
            " installed"
        )
        raise CLIError(msg, ExitCode.UNREACHABLE)
    with es_emulator() as url:
        out.print(
            f"No Elasticsearch at {config.es_address} ({check.detail}): using an"
            f" in-memory emulator of its API at {url}."
        )
        yield url


@contextmanager
def service_and_workers(
    workdir: Path,
    *,
    n_workers: int,
    rabbitmq: RabbitMQ,
    postgres: Postgres,
    es_url: str,
) -> Iterator[tuple[str, dict[str, str], subprocess.Popen]]:
    """The task service in a fresh RabbitMQ virtual host and ``n_workers`` ready
    on it, as ``stack`` and the demo run them; yields (the service's URL, the
    environment that points the CLI at them, the pool).

    That environment is this process's meanwhile: the workers' environment wins
    over their settings file (a user's ``ML_WORKER_*`` would), and the CLI's
    functions called here read their settings from it.
    """
    with (
        task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url) as (
            vhost,
            url,
            settings,
        ),
        ExitStack() as stack,
    ):
        settings["task_service"] = TaskServiceKind.ICIJ.value
        env = {f"ML_WORKER_{k.upper()}": v for k, v in settings.items()}
        env["ICIJ_WORKER_RABBITMQ_VHOST"] = vhost
        stack.enter_context(environment(**env))
        with err.status(f"Starting the task service's {n_workers} workers…"):
            pool = stack.enter_context(
                worker_pool(
                    workdir,
                    n_workers=n_workers,
                    rabbitmq=rabbitmq,
                    vhost=vhost,
                    ml_worker_config=settings,
                    wait=True,
                )
            )
        yield url, env, pool


def run_stack(*, workdir: Path, n_workers: int) -> None:
    """Run the services and a worker pool until Ctrl-C or SIGTERM."""
    rabbitmq, postgres = rabbitmq_from_env(), Postgres()
    rabbitmq.check()
    postgres.check()
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        es_url = stack.enter_context(elasticsearch(MLWorkerConfig()))
        url, env, pool = stack.enter_context(
            service_and_workers(
                workdir,
                n_workers=n_workers,
                rabbitmq=rabbitmq,
                postgres=postgres,
                es_url=es_url,
            )
        )
        log = workdir / "workers.log"
        env_file = workdir / "env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
        out.print(
            f"Task service at {url}; {n_workers} vectorizing workers, a search and a"
            f" fan-out worker (logs in {log}).\nIn another shell:\n\n"
            f"  source {env_file}\n  ./ml-worker load FOLDER --project NAME\n"
            "  ./ml-worker vectorize NAME\n  ./ml-worker search NAME 'a query'\n\n"
            "Ctrl-C stops everything started here (the RabbitMQ virtual host and the"
            f" emulator's documents go with it; the vectors stay in {workdir})."
        )
        _wait_for_a_signal(pool)
        err.print("Stopping…")


def _wait_for_a_signal(pool) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    try:
        while not stop and pool.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    if pool.poll() is not None:
        raise CLIError(f"the worker pool exited ({pool.returncode}): see its log")


def load_folder(folder: Path, project: str, config: MLWorkerConfig) -> tuple[int, int]:
    """Index every text file under ``folder`` as a document of ``project``:
    (documents indexed, binary files skipped)."""
    if not folder.is_dir():
        raise CLIError(f"{folder} is not a folder", ExitCode.USAGE)
    return asyncio.run(_load(folder, project, config))


async def _load(folder: Path, project: str, config: MLWorkerConfig) -> tuple[int, int]:
    counts: Counter[str] = Counter()

    def documents() -> Iterator[tuple[str, dict, None]]:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            document = _document(path, folder)
            counts["skipped" if document is None else "indexed"] += 1
            if document is not None:
                yield document

    es = es_client_from(config)
    try:
        if not await es.indices.exists(index=project):
            await datashare_index.create_project_index(es, project)
        await datashare_index.bulk_index(es, project, documents())
    finally:
        await es.close()
    return counts["indexed"], counts["skipped"]


def _document(path: Path, folder: Path) -> tuple[str, dict, None] | None:
    """A file as a Datashare document (id, source, routing); None for binary files."""
    data = path.read_bytes()
    if b"\0" in data[:_SNIFF_BYTES]:
        return None
    relative = path.relative_to(folder).as_posix()
    content_type = mimetypes.guess_type(path.name)[0] or "text/plain"
    source = datashare_index.document_source(
        data.decode("utf-8", errors="replace"),
        path=str(path.resolve()),
        content_type=content_type,
        title=path.name,
    )
    # Datashare's ids are hashes too; the relative path keeps them stable across
    # loads of the same folder, so loading again updates instead of duplicating.
    doc_id = hashlib.sha256(relative.encode()).hexdigest()
    return doc_id, source, None


def report_load(folder: Path, project: str, indexed: int, skipped: int) -> None:
    out.print(
        shown(
            f"Indexed {indexed} files of {folder} into project {project}"
            + (f"; skipped {skipped} binary files." if skipped else ".")
        )
    )
