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


def test_quality_reads_every_set_of_a_folder_in_order(tmp_path):
    from bench.quality import dataset_files

    for name in ("b.jsonl", "a.jsonl", "notes.txt"):
        (tmp_path / name).write_text("")
    single = tmp_path / "b.jsonl"

    assert dataset_files([tmp_path, single]) == [
        tmp_path / "a.jsonl",
        tmp_path / "b.jsonl",
        single,
    ]


def test_quality_sums_up_sets_against_the_naive_baseline():
    from bench.quality import overall

    figures = {
        "long": {"hybrid": 0.8, "naive_hybrid": 0.7, "vector": 0.75, "text": 0.6},
        "short": {"hybrid": 0.5, "naive_hybrid": 0.52, "vector": 0.55, "text": 0.4},
    }

    assert overall(figures) == (
        "quality sets=2 hybrid_mean=0.650 naive_hybrid_mean=0.610 vector_mean=0.650"
        " text_mean=0.500 min_gain=-0.020 (short) beats_modes=1/2"
    )
