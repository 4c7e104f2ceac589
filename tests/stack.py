"""Running the real stack from tests, and following tasks through the task API."""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from pathlib import Path

from icij_worker import TaskState

from ml_worker import documents, store
from ml_worker.constants import CREATE_VECTORIZATION_TASKS, VECTORIZE_DOCS, task_group
from ml_worker.task_client import TaskClient, wait_for_task
from ml_worker_dev.local_stack import task_stack, worker_pool

TIMEOUT_S = 600


@contextmanager
def running_stack(
    workdir: Path,
    *,
    es_url: str,
    rabbitmq,
    postgres,
    n_workers: int = 2,
    worker_settings: dict | None = None,
):
    """Task service and worker pool in a fresh vhost; yields (service URL, config).

    ``worker_settings`` override the workers' defaults (the task service's URL...).
    """
    with task_stack(workdir, rabbitmq=rabbitmq, postgres=postgres, es_url=es_url) as (
        vhost,
        url,
        settings,
    ):
        config = {**settings, "es_retry_s": 30.0, **(worker_settings or {})}
        with worker_pool(
            workdir,
            n_workers=n_workers,
            rabbitmq=rabbitmq,
            vhost=vhost,
            ml_worker_config=config,
        ):
            yield url, config, vhost


async def run_task(client: TaskClient, name: str, args: dict):
    task_id = await client.create_task(name, args, group=task_group(name))
    await wait_done(client, [task_id])
    return await client.get_task_result(task_id)


async def fan_out(client: TaskClient, project: str, **args) -> dict:
    """The summary of a create_vectorization_tasks run, once it is done (its
    batches have all ended)."""
    return await run_task(
        client, CREATE_VECTORIZATION_TASKS, {"project": project, **args}
    )


async def submit_batches(
    client: TaskClient, es, project: str, *, batch_size: int
) -> list[str]:
    """The project's documents as ``vectorize_docs`` tasks of ``batch_size`` ids,
    submitted at once, as a fan-out would over a run: the tests that hurt batches
    hold them all, where a fan-out keeps only a window of them in flight."""
    tasks = []
    async for page in documents.document_id_pages(es, project, page_size=batch_size):
        tasks.append(
            await client.create_task(
                VECTORIZE_DOCS,
                {"project": project, "docs": page},
                group=task_group(VECTORIZE_DOCS),
            )
        )
    return tasks


def create_table(db, project: str) -> None:
    """The project's table, empty, as a fan-out's first step creates it: what the
    batches of ``submit_batches`` write to (a batch refuses a project without one)."""
    store.open_or_create_table(db, project, model="english", embed_batch_size=64)


async def batch_tasks(client: TaskClient, project: str) -> list[str]:
    """The ids of the project's vectorize_docs tasks, oldest first: the batches
    icij-worker's fan-out created through the task API."""
    batches = [
        t
        for t in await client.get_tasks(name=VECTORIZE_DOCS)
        if (t.args or {}).get("project") == project
    ]
    return [t.id for t in sorted(batches, key=lambda t: t.created_at)]


async def run_failing_task(client: TaskClient, name: str, args: dict) -> str:
    """The error message of a task expected to fail."""
    task_id = await client.create_task(name, args, group=task_group(name))
    states = await wait_ended(client, [task_id])
    assert states[task_id] is TaskState.ERROR, f"{name}({args}) ended {states[task_id]}"
    errors = await client.get_task_errors(task_id)
    return errors[-1].error.message


async def wait_done(client: TaskClient, task_ids: list[str]) -> None:
    states = await wait_ended(client, task_ids)
    failed = {i: s for i, s in states.items() if s is not TaskState.DONE}
    if failed:
        errors = {i: await client.get_task_errors(i) for i in failed}
        raise AssertionError(f"tasks did not succeed: {failed} {errors}")


async def wait_ended(client: TaskClient, task_ids: list[str]) -> dict[str, TaskState]:
    """Each task's end state, once all have ended (followed as the CLI follows one)."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            return {t: (await wait_for_task(client, t)).state for t in task_ids}
    except TimeoutError:
        raise AssertionError(f"tasks not all ended after {TIMEOUT_S}s") from None


async def wait_state(client: TaskClient, task_ids, state: TaskState, *, at_least: int):
    """Until ``at_least`` of these tasks are in ``state`` at once."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while loop.time() < deadline:
        states = [(await client.get_task(t)).state for t in task_ids]
        if states.count(state) >= at_least:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never {at_least} tasks {state.value} at once")
