"""The icij-worker app: registers the tasks, nothing else."""

from icij_worker import AsyncApp
from icij_worker.app import TaskGroup

from ml_worker import tasks
from ml_worker.dependencies import DEPENDENCIES

app = AsyncApp(name="ml_worker", dependencies=DEPENDENCIES)
python = TaskGroup(name=tasks.GROUP)

app.task(name="ping", group=python)(tasks.ping)
app.task(name="create_vectorization_tasks", group=python)(
    tasks.create_vectorization_tasks
)
app.task(name=tasks.VECTORIZE_DOCS, group=python)(tasks.vectorize_docs)
app.task(name="find_most_similar", group=python)(tasks.find_most_similar)
