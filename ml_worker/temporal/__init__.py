"""The Temporal engine: the tasks as workflows and activities (Datashare 20 and
later), beside icij-worker's (``ml_worker.app``). The task logic is the same."""
