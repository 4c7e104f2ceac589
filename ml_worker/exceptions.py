"""Every error ml-worker raises on purpose, in one tree.

Four kinds, which the CLI turns into its exit codes: something named does not exist
(``NotFound``), a task's arguments or the settings are wrong (``InvalidInput``), a
service is down or refuses us (``Unavailable``), a task's user may not do what it
asks (``Forbidden``). Only outages (``OUTAGES``) are worth retrying, on every engine.
An error raised in a worker reaches the CLI by its class name only, through the task
service: ``kind_of_remote`` finds its kind again by that name.
"""

from __future__ import annotations


class MLWorkerError(Exception):
    """The base of every error ml-worker raises on purpose."""


class NotFound(MLWorkerError, LookupError):
    """Something named does not exist: a project, its vectors, a task, a model."""


class InvalidInput(MLWorkerError, ValueError):
    """A task's arguments or the settings are wrong: retrying cannot help."""


class Unavailable(MLWorkerError, ConnectionError):
    """A service is down or refuses us: retrying later may help."""


class Forbidden(MLWorkerError, PermissionError):
    """The task's user may not do what the task asks: retrying cannot help."""


class UnknownProject(NotFound):
    """No Elasticsearch index of that name."""


class ProjectNotVectorized(NotFound):
    """The project has no vector table yet."""


class DocumentNotVectorized(NotFound):
    """A document with no passage in its project's vector table: not in the project,
    or not vectorized yet."""


class ModelNotFound(NotFound):
    """Neither a local model folder, a packaged model nor one the hub has."""


class DocumentWithoutText(InvalidInput):
    """A document whose passages are none but the row of a document without text:
    nothing to compare other documents with."""


class UnsupportedModel(InvalidInput):
    """A model whose vectors or queries ml-worker cannot compute without torch."""


class QueryEncoderExportFailed(MLWorkerError, RuntimeError):
    """The child process exporting a query encoder failed, or its vectors disagree."""


class ProjectNotGranted(Forbidden):
    """The task's user is not granted the project the task names."""


class InvalidArguments(InvalidInput):
    """A task was given arguments it does not take, or of the wrong kind."""


class InvalidProject(InvalidInput):
    """A project name that cannot name a table."""


class InvalidProjectIndex(InvalidInput):
    """The project's index is not laid out as Datashare lays one out."""


class ModelMismatch(InvalidInput):
    """A model other than the one that embedded the project's table."""


class UnsafeObjectStore(InvalidInput):
    """The object store would let two writers commit the same table version."""


class MissingSearchAttributes(InvalidInput):
    """The Temporal namespace lacks the search attributes of the tasks' progress."""


class ElasticsearchUnavailable(Unavailable):
    """Elasticsearch did not answer, even after retrying with backoff."""


class BrokerUnreachable(Unavailable):
    """RabbitMQ or its management API does not answer."""


class TableBusy(Unavailable):
    """Other writers kept committing first: the write is worth trying again later."""


class TaskServiceError(MLWorkerError):
    """The task API answered with an error, or could not be reached."""


class TaskServiceUnavailable(TaskServiceError, Unavailable):
    """The task API does not answer, or answers that it cannot serve now."""


class TaskServiceAuthError(TaskServiceError, Unavailable):
    """The task API refuses our credentials."""


class UnknownTask(TaskServiceError, NotFound):
    """No task of that id."""


# The errors a task is retried on, by every engine: services that may come back.
# Anything else (bad input, not found, forbidden, a bug) fails the task at once.
OUTAGES: tuple[type[MLWorkerError], ...] = (
    ElasticsearchUnavailable,
    TaskServiceUnavailable,
    TableBusy,
)


class DependencyNotSetUp(MLWorkerError, RuntimeError):
    """A task ran outside a worker process whose dependencies were set up."""

    def __init__(self, name: str):
        super().__init__(
            f"{name} is not set up: it exists only inside a worker process"
            " (`ml-worker workers start`), or pass it to the task as a keyword"
            " argument"
        )


def kind_of_remote(error_name: str) -> type[MLWorkerError] | None:
    """The kind (``NotFound``, ``InvalidInput``, ``Unavailable``, ``Forbidden``) of
    an error raised in a worker, known by its class name; None for other errors."""
    error = globals().get(error_name)
    if not (isinstance(error, type) and issubclass(error, MLWorkerError)):
        return None
    return next(
        (
            kind
            for kind in (NotFound, InvalidInput, Unavailable, Forbidden)
            if issubclass(error, kind)
        ),
        None,
    )


def first_line(error: BaseException) -> str:
    """What went wrong, in the first line of ``error``'s message (as it is: whoever
    shows it makes it printable, as messages may quote documents and servers)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else error.__class__.__name__
