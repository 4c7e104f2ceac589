"""Search and fan-out processes never import torch: they stay about 1 GiB smaller.

Checked in a fresh interpreter, as a worker process starts: the test process itself
has imported torch long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from ml_worker import query_encoder, store
from ml_worker.constants import ENGLISH_MODEL
from ml_worker_dev.local_stack import free_port

HEAVY = ("torch", "sentence_transformers", "transformers")

# Registers every task, creates a table as create_vectorization_tasks does, writes
# rows that carry their vectors, and searches them: queries embedded without torch.
_LIGHT_RUN = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    import ml_worker.icij.app
    from ml_worker import store, tasks
    from ml_worker.constants import ENGLISH_MODEL

    db = store.connect(sys.argv[1])
    table = store.open_or_create_table(
        db, "light", model=ENGLISH_MODEL, embed_batch_size=8
    )
    vectors = np.random.default_rng(0).standard_normal((3, 384))
    rows = [
        {
            "doc_id": f"doc-{i}", "root_id": f"doc-{i}", "passage": 0, "start": 0,
            "end": len(text), "content": text,
            "vector": (vector / np.linalg.norm(vector)).tolist(),
        }
        for i, (text, vector) in enumerate(
            zip(["the cat sat on the mat", "tax havens", "a board meeting"], vectors)
        )
    ]
    store.replace_documents(table, [row["doc_id"] for row in rows], rows)
    found = asyncio.run(tasks.find_most_similar("light", ["cat"], vector_db=db))
    assert found[0][0]["doc_id"] == "doc-0", found
    print(" ".join(m for m in HEAVY if m in sys.modules) or "light")
    """
)


def test_search_and_table_creation_never_import_torch(tmp_path, monkeypatch):
    # An empty cache: the query encoder is exported there, by a child process.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    script = f"HEAVY = {HEAVY!r}\n{_LIGHT_RUN}"
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "vectors")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "light"
    assert query_encoder.export_path(ENGLISH_MODEL).is_file()


# `ml-worker status` over a project table, every other service down: it reads the
# table's model and counts, and never needs the model itself.
_STATUS_RUN = textwrap.dedent(
    """
    import sys
    from ml_worker.cli.main import main

    try:
        main(["status"])
    except SystemExit:
        pass
    print(" ".join(m for m in HEAVY if m in sys.modules) or "light")
    """
)


def test_status_never_imports_the_model_libraries_nor_icij_worker(tmp_path):
    vectors = tmp_path / "vectors"
    store.open_or_create_table(
        store.connect(str(vectors)), "status", model=ENGLISH_MODEL, embed_batch_size=8
    )
    closed = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "ML_WORKER_VECTOR_DB_URI": str(vectors),
        "ML_WORKER_ES_ADDRESS": closed,
        "ML_WORKER_TASK_SERVICE_URL": closed,
        "ICIJ_WORKER_RABBITMQ_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    # icij-worker's import took 0.9 s of status's start-up: its settings are read
    # without it (ml_worker.icij.broker.RabbitMQSettings).
    script = f"HEAVY = {(*HEAVY, 'icij_worker')!r}\n{_STATUS_RUN}"
    run = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "│ english │" in run.stdout, run.stdout + run.stderr
    assert run.stdout.split()[-1] == "light"
