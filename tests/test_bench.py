"""Every benchmark imports and explains itself: a broken bench fails here, not on
the day someone needs its figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
BENCHES = sorted(p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__")


def _bench(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", BENCHES)
def test_bench_answers_help(name):
    result = _bench(name, "--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:"), result.stdout


def test_quality_bench_asks_for_its_dataset(monkeypatch):
    monkeypatch.delenv("ML_WORKER_QUALITY_DATASET", raising=False)
    missing = _bench("quality", "--dataset", "no-such.jsonl")

    assert missing.returncode == 2
    assert "no dataset file at no-such.jsonl" in missing.stderr
