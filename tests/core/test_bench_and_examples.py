"""The orchestration and scale benchmarks (--quick) and the core demo run, so none of them can rot."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_orchestration_benchmark_quick(run_benchmark: Callable[..., str]) -> None:
    out = run_benchmark("orchestration", "--quick", timeout=170)
    lines = out.strip().splitlines()
    assert re.fullmatch(r"ratio autogen/tq-sqlite: \d+(\.\d+)?", lines[-1]), out
    for label in ("tq-agents (SQLite store):", "tq-agents (memory store):", "AutoGen GraphFlow:"):
        assert any(line.startswith(label) and line.endswith("us/turn") for line in lines), out
    assert float(lines[-1].split(":")[1]) > 0


@pytest.mark.timeout(120)
def test_scale_benchmark_quick(run_benchmark: Callable[..., str]) -> None:
    out = run_benchmark("scale", "--quick", timeout=110)
    lines = out.strip().splitlines()
    for case in ("resume-rebuild", "all-join", "replay-fan-out", "validate-redirects", "long-loop"):
        assert any(line.startswith(case) and "growth exponent" in line for line in lines), out
    assert re.fullmatch(r"worst growth exponent: -?\d+\.\d+", lines[-1]), out


@pytest.mark.timeout(60)
def test_core_demo_runs(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "core_demo.py"), "--store", str(tmp_path / "runs.sqlite")],
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    ).stdout
    assert "■ completed after 6 turns" in out
    assert "tool word_count → 5" in out
    assert out.strip().splitlines()[-1].endswith('"approved": true, "details": ""}')
