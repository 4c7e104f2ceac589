"""The client of icij-worker's HTTP task service, against the real service."""

from __future__ import annotations

import pytest

from ml_worker.task_client import ICIJTaskClient, UnknownTask
from ml_worker_dev.local_stack import free_port, task_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def service_url(tmp_path_factory, rabbitmq, postgres):
    workdir = tmp_path_factory.mktemp("task-service")
    with (
        rabbitmq.temporary_vhost() as vhost,
        task_service(
            workdir, rabbitmq=rabbitmq, vhost=vhost, postgres=postgres, port=free_port()
        ) as url,
    ):
        yield url


async def test_an_unknown_task_is_told_apart_from_a_failure(service_url):
    # The service answers an unknown id with a 500 and closes the connection, which
    # the client's next request (the task list that tells the two apart) may find
    # closed: 38 of 60 lookups failed so before the list was sent again.
    for i in range(30):
        async with ICIJTaskClient(service_url) as client:
            with pytest.raises(UnknownTask, match=f"unknown task no-such-task-{i}"):
                await client.get_task(f"no-such-task-{i}")
