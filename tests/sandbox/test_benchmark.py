"""benchmarks/sandbox.py --quick runs end to end (so it cannot rot) and reports every mode."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from ._support import engine_required, unavailable

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(240)]


def test_sandbox_benchmark_quick(run_benchmark: Callable[..., str]) -> None:
    args = ["--quick", "--json", "--runs", "6"] + (["--require-engine"] if engine_required() else [])
    out = run_benchmark("sandbox", *args, timeout=220)
    data = json.loads(out.strip().splitlines()[-1])
    if data["skipped"]:
        unavailable(f"benchmark modes skipped: {data['skipped']}")
    assert set(data["rows"]) == {"fresh container", "warm pool", "bwrap"}
    for name, row in data["rows"].items():
        assert row["median_ms"] > 0 and row["seq_per_s"] > 0, name
    assert "median" in out and "runs/s" in out
    assert set(data["ratios"]) == {"fresh/warm latency", "warm/fresh throughput", "fresh/bwrap latency"}
