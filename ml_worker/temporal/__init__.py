"""The Temporal engine (Datashare 20 and later): the tasks as workflows and
activities, beside icij-worker's (``ml_worker.icij``). The task logic is the same
(``ml_worker.tasks``)."""
