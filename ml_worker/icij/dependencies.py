"""The worker process's dependencies as icij-worker's app sets them up.

icij-worker runs its app's ``(name, setup, teardown)`` entries when a worker
process starts and stops, with its own keyword arguments: the worker's settings
(``app_bootstrap_config_path`` names ml-worker's settings file) and the app (whose
tasks, filtered to the worker's group, say which models to load). Here they enter
the engine-neutral ``dependencies.worker_dependencies``, and the task client the
fan-out creates its batches with.
"""

from __future__ import annotations

import warnings
from contextlib import AsyncExitStack
from typing import Any

from ml_worker.dependencies import use_engine, worker_dependencies
from ml_worker.exceptions import DependencyNotSetUp
from ml_worker.icij.broker import RabbitMQSettings
from ml_worker.task_client import TaskClient

_STACK: AsyncExitStack | None = None
_TASK_CLIENT: TaskClient | None = None


async def _set_up(worker_config: Any = None, app: Any = None, **_: Any) -> None:
    # icij-worker hands every dependency the same keyword arguments; only these
    # two are of use here.
    global _STACK, _TASK_CLIENT
    from ml_worker.icij.engine import ICIJEngine, task_client_from

    path = worker_config.app_bootstrap_config_path if worker_config else None
    task_names = set(app.registry) if app is not None else set()
    stack = AsyncExitStack()
    config = await stack.enter_async_context(worker_dependencies(path, task_names))
    _TASK_CLIENT = await stack.enter_async_context(task_client_from(config))
    if worker_config is not None:
        use_engine(ICIJEngine(config, rabbitmq=broker_settings(worker_config)))
    _STACK = stack
    # icij-worker 0.19.5 keeps its events' timestamps as ISO strings, which
    # serialize right but make pydantic warn at every event: two lines per task
    # progress in the worker's log, nothing to act on.
    warnings.filterwarnings(
        "ignore",
        message="Pydantic serializer warnings",
        category=UserWarning,
        module="icij_common.registrable",
    )


async def _tear_down(*exc_info: Any) -> None:
    global _STACK, _TASK_CLIENT
    if _STACK is not None:
        await _STACK.__aexit__(*exc_info)
    _STACK, _TASK_CLIENT = None, None


def broker_settings(worker_config: Any) -> RabbitMQSettings:
    """The broker of icij-worker's worker settings, as ml-worker reads it."""
    names = RabbitMQSettings.model_fields
    return RabbitMQSettings(
        **{
            name: getattr(worker_config, name)
            for name in names
            if hasattr(worker_config, name)
        }
    )


def lifespan_task_client() -> TaskClient:
    if _TASK_CLIENT is None:
        raise DependencyNotSetUp("task client")
    return _TASK_CLIENT


DEPENDENCIES = [("ml-worker", _set_up, _tear_down)]
