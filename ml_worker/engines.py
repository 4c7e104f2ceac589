"""The one place that picks the task engine: nothing else asks which is configured."""

from __future__ import annotations

from ml_worker.config import EngineName, MLWorkerConfig
from ml_worker.engine import TaskEngine


def engine_for(config: MLWorkerConfig) -> TaskEngine:
    """The engine ``config`` names; its package is imported only then."""
    if config.engine is EngineName.TEMPORAL:
        from ml_worker.temporal.engine import TemporalEngine

        return TemporalEngine(config)
    from ml_worker.icij.engine import ICIJEngine

    return ICIJEngine(config)
