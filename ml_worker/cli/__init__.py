"""The ``ml-worker`` command line (see ``ml_worker.cli.main``)."""

from ml_worker.cli.main import app, main

__all__ = ["app", "main"]
