"""The client of icij-worker's HTTP task service, against the real service.

Connections are cut by a TCP proxy in front of it, at a given request, as a server
closing a kept-alive connection cuts them.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from ml_worker.constants import task_group
from ml_worker.exceptions import TaskServiceUnavailable, UnknownTask
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker.task_client import new_task_id
from ml_worker_dev.local_stack import free_port
from tests.faults import TcpProxy

pytestmark = pytest.mark.e2e

# The task list, which tells an unknown task apart from a failure, and a creation.
TASK_LIST = rb"^POST /api/tasks HTTP/"
CREATION = rb"^PUT /api/tasks/ping-"


@pytest.fixture
async def task_id(session_stack) -> str:
    """A task the service knows.

    icij-worker's PostgreSQL storage makes its tables with the first task: until
    then the task list fails (500), and no task can be told unknown.
    """
    async with ICIJTaskClient(session_stack.url) as client:
        return await client.create_task("ping", {}, group=task_group("ping"))


@pytest.fixture
def proxy(session_stack):
    service = urlparse(session_stack.url)
    proxy = TcpProxy(service.hostname, service.port, free_port())
    proxy.start()
    yield proxy
    proxy.close()


async def test_a_read_cut_off_is_sent_again_on_a_new_connection(proxy, task_id):
    # As when the service closes a kept-alive connection the client then sends on:
    # it does so after each 500, and 38 of 60 unknown-task lookups failed so before
    # reads were sent again.
    proxy.trap(TASK_LIST, lambda client: None)
    async with ICIJTaskClient(proxy.url) as client:
        tasks = await client.get_tasks()

    assert proxy.sprung.is_set()
    assert task_id in [t.id for t in tasks]


async def test_an_unknown_task_is_told_apart_from_a_failure(session_stack, task_id):
    # The service answers an unknown id with a 500, as it does a failure.
    async with ICIJTaskClient(session_stack.url) as client:
        with pytest.raises(UnknownTask, match="unknown task no-such-task"):
            await client.get_task("no-such-task")
        assert (await client.get_task(task_id)).id == task_id


async def test_a_creation_cut_off_is_not_sent_again(proxy, session_stack, task_id):
    proxy.trap(CREATION, lambda client: None)
    cut = new_task_id("ping")
    async with ICIJTaskClient(proxy.url) as client:
        with pytest.raises(TaskServiceUnavailable, match="unreachable"):
            await client.create_task("ping", {}, group=task_group("ping"), task_id=cut)

    assert proxy.sprung.is_set()
    async with ICIJTaskClient(session_stack.url) as client:
        with pytest.raises(UnknownTask):
            await client.get_task(cut)
