"""What a reader sees of a project's table while hosts write it: every document,
never one without passages, never one twice in a search's results.

Four writer processes on two hosts (network namespaces, see tests/hosts.py, each
reaching the S3 server through its own proxy) write every batch twice, the two
writers of a batch starting it at the same moment, through the product's write
path (``store.replace_documents``): first every document, then a new version of
each. The table has the passage key's index, as upkeep builds it after a table's
first batch, so Lance leaves both copies of a passage written twice at once until
the later writer's repair removes one. Meanwhile a reader process counts the
table's rows and searches it every ``POLL_S`` seconds.

What it counts: documents it saw before and then found without passages (must be
none: no write removes a document's last passage), searches returning a document
twice (must be none), and twin rows, the copies Lance keeps for a moment by
nature, reported, not refused: a search groups passages by document. The table is
then checked passage by passage.

The writers get their batches from a file and meet at each batch through files:
the hosts share the file system, not a network.
"""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from ml_worker import search, store, upkeep
from ml_worker.constants import ENGLISH_MODEL, SearchMode
from tests.hosts import can_make_hosts, hosts
from tests.tables import assert_holds, document, document_versions, stand_in_batches

pytestmark = [
    pytest.mark.scale,
    pytest.mark.skipif(not can_make_hosts(), reason="network namespaces need root"),
]

N_DOCS = 160
BATCH_DOCS = 8
POLL_S = 0.2
PROJECT = "readers"
# How long a writer waits for the other writer of its batch, or for the test.
MEET_S = 300.0
SPAWN = multiprocessing.get_context("spawn")
ROOT = Path(__file__).resolve().parent.parent


def test_a_reader_sees_every_document_once_while_hosts_write_every_batch_twice(
    s3, s3_bucket, tmp_path
):
    uri, options = f"s3://{s3_bucket}/vectors", s3.storage_options()
    table = store.open_or_create_table(
        store.connect(uri, storage_options=options),
        PROJECT,
        model=ENGLISH_MODEL,
        embed_batch_size=8,
    )
    seed = [document("doc-seed", "A first document, so that the table has indices.")]
    for doc_ids, rows in stand_in_batches(table, seed, BATCH_DOCS):
        store.replace_documents(table, doc_ids, rows)
    upkeep.ensure_indices(table)
    assert "passage_id_idx" in {index.name for index in table.list_indices()}
    versions = [document_versions(1, N_DOCS), document_versions(2, N_DOCS)]
    phases = [stand_in_batches(table, docs, BATCH_DOCS) for docs in versions]
    sync = tmp_path / "sync"
    sync.mkdir()

    endpoint = urlparse(s3.url)
    with (
        hosts(2, {"s3": (endpoint.hostname, endpoint.port)}) as made,
        ExitStack() as stack,
    ):
        writers: dict[str, subprocess.Popen] = {}
        for host in made:
            # Pair 0 writes the first half of each phase's batches, pair 1 the
            # second: one writer of each pair on each host.
            for pair in (0, 1):
                name = f"{host.namespace}-{pair}"
                plan = {
                    "uri": uri,
                    "options": s3.storage_options(host.url("s3")),
                    "sync": str(sync),
                    "name": name,
                    "pair": pair,
                    "phases": [_half(batches, pair) for batches in phases],
                }
                path = tmp_path / f"{name}.plan"
                path.write_bytes(pickle.dumps(plan))
                log = stack.enter_context((tmp_path / f"{name}.log").open("wb"))
                command = [sys.executable, "-m", "tests.test_readers", str(path)]
                writers[name] = subprocess.Popen(
                    host.command(command), cwd=ROOT, stdout=log, stderr=log
                )
                stack.callback(_stop, writers[name])
        _wait_for([sync / f"ready-{name}" for name in writers], writers, tmp_path)

        stop, ready, results = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
        reader = SPAWN.Process(
            target=_read_while_written, args=(uri, options, stop, ready, results)
        )
        reader.start()
        stack.callback(_stop_reader, reader)
        assert ready.wait(MEET_S), "the reader did not start"
        for phase in range(len(phases)):
            (sync / f"go-{phase}").touch()
            done = [sync / f"done-{phase}-{name}" for name in writers]
            _wait_for(done, writers, tmp_path)
        stop.set()
        report = results.get(timeout=MEET_S)

    print(f"\nreader while 4 writers on 2 hosts wrote every batch twice: {report}")
    assert report["polls during writes"] > 0, "the reader saw no write happen"
    assert report["documents without passages"] == 0
    assert report["searches returning a document twice"] == 0
    assert report["documents"] == N_DOCS + 1
    assert_holds(table, seed + versions[-1])


def _half(batches: list, pair: int) -> list:
    half = len(batches) // 2
    return batches[:half] if pair == 0 else batches[half:]


def _read_while_written(uri: str, options: dict, stop, ready, results) -> None:
    """Counts rows and searches the table every POLL_S seconds until ``stop``,
    then once more; puts its counts in ``results``."""
    table = store.open_table(store.connect(uri, storage_options=options), PROJECT)
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    rng = np.random.default_rng(0)
    version = table.version
    while True:
        last = stop.is_set()
        table.checkout_latest()
        counts["polls during writes"] += table.version != version
        version = table.version
        rows = table.search().select([store.DOC_ID, store.PASSAGE_ID]).limit(None)
        got = rows.to_arrow()
        passages = Counter(got[store.DOC_ID].to_pylist())
        counts["polls"] += 1
        counts["document observations"] += len(passages)
        counts["documents without passages"] += len(seen - passages.keys())
        seen |= passages.keys()
        copies = Counter(got[store.PASSAGE_ID].to_pylist())
        twins = sum(n - 1 for n in copies.values() if n > 1)
        counts["polls with twin rows"] += twins > 0
        counts["twin rows seen"] += twins
        counts["most twin rows at once"] = max(counts["most twin rows at once"], twins)
        vector = rng.standard_normal(384).astype(np.float32)
        vector /= np.linalg.norm(vector)
        for mode in (SearchMode.HYBRID, SearchMode.VECTOR, SearchMode.TEXT):
            (hits,) = search.search_queries(
                table,
                ["the port authority approved a lease"],
                mode=mode,
                n_similar=N_DOCS,
                vectors=[vector.tolist()],
            )
            found = [hit["doc_id"] for hit in hits]
            counts["searches"] += 1
            counts["documents found"] += len(found)
            counts["searches returning a document twice"] += len(found) != len(
                set(found)
            )
        ready.set()
        if last:
            break
        stop.wait(POLL_S)
    results.put({**counts, "documents": len(seen)})


def _wait_for(paths: list[Path], writers: dict, logs: Path) -> None:
    """Until every path exists; fails as soon as a writer fails (a writer done
    with its last phase exits)."""
    deadline = time.monotonic() + MEET_S
    while not all(path.exists() for path in paths):
        for name, writer in writers.items():
            if writer.poll():
                log = (logs / f"{name}.log").read_text(errors="replace")
                pytest.fail(f"writer {name} exited {writer.returncode}:\n{log[-3000:]}")
        assert time.monotonic() < deadline, f"still waiting for {paths}"
        time.sleep(0.05)


def _stop(writer: subprocess.Popen) -> None:
    if writer.poll() is None:
        writer.kill()
    writer.wait()


def _stop_reader(reader) -> None:
    reader.join(timeout=60)
    if reader.exitcode is None:
        reader.kill()
        reader.join()


def _meet(place: Path, me: str) -> None:
    """Wait at ``place`` for the other writer of the batch."""
    place.mkdir(exist_ok=True)
    (place / me).touch()
    deadline = time.monotonic() + MEET_S
    while len(list(place.iterdir())) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no other writer came to {place}")
        time.sleep(0.005)


def _write(plan_path: str) -> None:
    """A writer process: each phase's batches, when the test says go, each batch
    with the other writer of its pair."""
    plan = pickle.loads(Path(plan_path).read_bytes())
    sync, name = Path(plan["sync"]), plan["name"]
    db = store.connect(plan["uri"], storage_options=plan["options"])
    table = store.writable_table(db, PROJECT)
    (sync / f"ready-{name}").touch()
    for phase, batches in enumerate(plan["phases"]):
        go = sync / f"go-{phase}"
        deadline = time.monotonic() + MEET_S
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {go}")
            time.sleep(0.01)
        for i, (doc_ids, rows) in enumerate(batches):
            _meet(sync / f"{phase}-{plan['pair']}-{i}", name)
            store.replace_documents(table, doc_ids, rows)
        (sync / f"done-{phase}-{name}").touch()


if __name__ == "__main__":
    _write(sys.argv[1])
