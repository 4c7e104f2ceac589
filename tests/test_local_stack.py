"""The local stack's services as the demo, the tests and the benchmarks start them."""

from __future__ import annotations

import os
import resource
from pathlib import Path

from ml_worker_dev.local_stack import es_emulator


def _child_pids(name: str) -> set[int]:
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm, rest = text.split("(", 1)[1].rsplit(")", 1)
        if comm == name and int(rest.split()[1]) == os.getpid():
            pids.add(int(stat.parent.name))
    return pids


def test_the_emulator_runs_under_its_memory_cap():
    limit = 3 * 2**30
    before, environment = _child_pids("osmem-server"), dict(os.environ)
    with es_emulator(memory_limit_bytes=limit):
        (pid,) = _child_pids("osmem-server") - before
        assert resource.prlimit(pid, resource.RLIMIT_AS) == (limit, limit)
        variables = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"GOMEMLIMIT=2457MiB" in variables  # its GC works hard from 80 %
    assert dict(os.environ) == environment
