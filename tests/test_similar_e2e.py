"""Similar documents through the real stack: ``ml-worker similar`` and the
``find_similar_documents`` task, on the session's task service and workers."""

from __future__ import annotations

import json
import random

import pytest

from ml_worker.cli.errors import ExitCode
from ml_worker.icij.task_client import ICIJTaskClient
from ml_worker_dev.datashare_index import (
    bulk_index,
    create_project_index,
    document_source,
)
from tests.corpus import filler
from tests.stack import fan_out, run_failing_task, run_task
from tests.test_cli import cli, error_line

pytestmark = pytest.mark.e2e


async def test_a_near_duplicate_comes_first_marked_as_such(
    session_workers, es, project
):
    rng = random.Random(7)
    original = filler(rng, 30)
    docs = {
        "memo": original,
        # The same memo, scanned again: a word changed, the spacing lost.
        "memo-copy": " ".join(original.replace("the", "a", 1).split()),
        **{f"other-{i}": filler(rng, 30) for i in range(6)},
    }
    await create_project_index(es, project)
    await bulk_index(
        es,
        project,
        [(i, document_source(c, path=f"/leak/{i}.txt"), None) for i, c in docs.items()],
    )
    env = {
        "ML_WORKER_TASK_SERVICE_URL": session_workers.url,
        "ICIJ_WORKER_RABBITMQ_VHOST": session_workers.vhost,
    }
    async with ICIJTaskClient(session_workers.url) as client:
        assert (await fan_out(client, project))["new"] == len(docs)
        hits = await run_task(
            client,
            "find_similar_documents",
            {"project": project, "doc_id": "memo", "n_similar": 3},
        )
        unknown = await run_failing_task(
            client,
            "find_similar_documents",
            {"project": project, "doc_id": "not-a-document"},
        )

    assert hits[0]["doc_id"] == "memo-copy"
    assert hits[0]["relation"] == "near_duplicate"
    assert all(0.0 <= h["score"] <= 1.0 for h in hits)
    assert "memo" not in {h["doc_id"] for h in hits}
    assert "not-a-document" in unknown

    shown = cli("similar", project, "memo", "-n", "3", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)[0]["doc_id"] == "memo-copy"
    table = cli("similar", project, "memo", "-n", "3", env=env)
    assert "near duplicate" in table.stdout and "memo-copy" in table.stdout
    missing = cli("similar", project, "not-a-document", env=env)
    assert missing.returncode == ExitCode.NOT_FOUND
    assert f"next: `ml-worker vectorize {project}`" in error_line(missing)
