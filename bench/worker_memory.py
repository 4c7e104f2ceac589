"""Worker memory: the RSS of a search worker and of a vectorizing worker.

Each kind of worker runs in a fresh process, set up as icij-worker sets up a worker
(``icij_worker.backend.mp``): the app loaded (``ml_worker.app``, every task
registered), kept to the tasks of the worker's group, and its lifespan dependencies
run with it, which preload what those tasks need. Then the tasks run in that process
as a worker runs them, on a project in the Elasticsearch-API emulator and a local
LanceDB table: ``vectorize_docs`` batches for the vectorizing worker, then
``find_most_similar`` searches (hybrid, one query each) of what they wrote for the
search worker, and nothing for the fan-out worker. The broker's consumer loop is
left out: the app's task groups are not split yet (a group for searches and one for
the fan-out), so no worker process of those kinds can be started yet.

Reported from ``/proc/self/status``: VmRSS once imported (``ml_worker.app``), once
set up (idle), after the tasks (busy), and VmHWM, the peak. The vectorizing worker
also reports its RSS once torch and sentence-transformers are imported, before the
model is loaded. The query encoder's ONNX export, when not cached yet, runs in a
child process of its own and is not counted.

    uv run python -m bench.worker_memory [--docs N] [--searches N]

The last line printed is ``worker_memory search_idle_mib=X search_busy_mib=Y
vectorize_idle_mib=Z vectorize_busy_mib=W`` (busy: VmHWM, the peak under load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Each kind of worker: its task group once the groups are split, and its tasks.
KINDS = {
    "vectorize": ("PYTHON", ["vectorize_docs"]),
    "search": ("PYTHON_SEARCH", ["find_most_similar"]),
    "fanout": ("PYTHON_FANOUT", ["create_vectorization_tasks"]),
}
BATCH = 64


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _worker_app(kind: str):
    """The app as a worker of ``kind`` gets it: kept to its group's tasks."""
    import copy

    from ml_worker.app import app

    group, names = KINDS[kind]
    if app.task_group(group) is not None:
        return copy.deepcopy(app).filter_tasks(group)
    # Not split yet: what filtering would keep, which is all the lifespan reads.
    return SimpleNamespace(registry={name: app.registry[name] for name in names})


async def _work(kind: str, args: dict) -> dict:
    """In the worker's process: set it up, run its tasks, and sample its memory."""
    import ml_worker.app
    from ml_worker import tasks

    samples = {"imported": _status_mib("VmRSS")}
    if kind == "vectorize":
        import sentence_transformers  # noqa: F401  what the model's loading imports
        import torch  # noqa: F401

        samples["torch"] = _status_mib("VmRSS")
    app = _worker_app(kind)
    async with ml_worker.app.app.lifetime_dependencies(
        worker_id=f"bench-{kind}", worker_config=None, app=app
    ):
        samples["idle"] = _status_mib("VmRSS")
        if kind == "vectorize":
            docs = args["doc_ids"]
            for start in range(0, len(docs), BATCH):
                await tasks.vectorize_docs(docs[start : start + BATCH], args["project"])
        elif kind == "search":
            for query in args["queries"]:
                await tasks.find_most_similar(args["project"], [query])
        samples["busy"] = _status_mib("VmRSS")
        samples["peak"] = _status_mib("VmHWM")
    return samples


def _run_worker(kind: str, args: dict, env: dict) -> dict:
    command = [sys.executable, "-m", "bench.worker_memory", "--kind", kind, json.dumps(args)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _queries(docs: list[str], n: int) -> list[str]:
    """``n`` queries: the first words of the documents, in turn."""
    return [" ".join(docs[i % len(docs)].split()[:6]) for i in range(n)]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=256, help="documents vectorized")
    parser.add_argument("--searches", type=int, default=100, help="searches run")
    parser.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:  # in a worker's process
        print(json.dumps(asyncio.run(_work(args.kind, json.loads(args.args)))))
        return

    from bench.throughput import PROJECT, corpus, index_corpus
    from ml_worker import store
    from ml_worker.config import MLWorkerConfig
    from ml_worker.local_stack import es_emulator

    print(f"load average {_load()} (1, 5 min), {os.cpu_count()} CPUs", flush=True)
    docs = corpus(args.docs)
    results = {}
    with tempfile.TemporaryDirectory(prefix="ml-worker-bench-") as tmp, es_emulator() as es_url:
        asyncio.run(index_corpus(es_url, docs))
        vectors = str(Path(tmp) / "vectors")
        # The table, as create_vectorization_tasks creates it.
        store.open_or_create_table(
            store.connect(vectors), PROJECT, model=MLWorkerConfig().model,
            embed_batch_size=MLWorkerConfig().embed_batch_size,
        )
        env = {**os.environ, "ML_WORKER_ES_ADDRESS": es_url, "ML_WORKER_VECTOR_DB_URI": vectors}
        work = {
            "project": PROJECT,
            "doc_ids": [f"doc-{i:06d}" for i in range(len(docs))],
            "queries": _queries(docs, args.searches),
        }
        for kind in KINDS:  # vectorize first: the searches find what it wrote
            results[kind] = _run_worker(kind, work, env)
            figures = ", ".join(f"{k} {v:.0f}" for k, v in results[kind].items())
            print(f"{kind} worker RSS (MiB): {figures}", flush=True)
    print(f"load average {_load()} (1, 5 min)")
    search, vectorize = results["search"], results["vectorize"]
    print(
        f"worker_memory search_idle_mib={search['idle']:.0f}"
        f" search_busy_mib={search['peak']:.0f}"
        f" vectorize_idle_mib={vectorize['idle']:.0f}"
        f" vectorize_busy_mib={vectorize['peak']:.0f}"
    )


if __name__ == "__main__":
    main()
