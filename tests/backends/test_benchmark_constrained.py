"""``benchmarks/constrained.py --quick`` runs and ends with its figure (so the benchmark cannot rot)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]


def test_constrained_benchmark_quick(tiny_checkpoint: Path) -> None:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "constrained.py"), "--quick"]
    cmd += ["--checkpoint", str(tiny_checkpoint)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=220, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert re.fullmatch(r"constrained overhead: -?\d+(\.\d+)?%", lines[-1]), lines[-1]
    text = proc.stdout
    assert re.search(r"decode without grammar: +\d+\.\d+ tok/s", text)
    assert re.search(r"decode with grammar: +\d+\.\d+ tok/s", text)
    assert re.search(r"per-token overhead: [+-]\d+\.\d+ ms", text)
