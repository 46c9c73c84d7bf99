"""benchmarks/sandbox.py --quick runs end to end (so it cannot rot) and reports every mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import engine_required, unavailable

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.timeout(240)]

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sandbox.py"


def test_sandbox_benchmark_quick() -> None:
    cmd = [sys.executable, str(SCRIPT), "--quick", "--json", "--runs", "6"]
    if engine_required():
        cmd.append("--require-engine")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=220)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if data["skipped"]:
        unavailable(f"benchmark modes skipped: {data['skipped']}")
    assert set(data["rows"]) == {"fresh container", "warm pool", "bwrap"}
    for name, row in data["rows"].items():
        assert row["median_ms"] > 0 and row["seq_per_s"] > 0, name
    assert "median" in proc.stdout and "runs/s" in proc.stdout
    assert set(data["ratios"]) == {"fresh/warm latency", "warm/fresh throughput", "fresh/bwrap latency"}
