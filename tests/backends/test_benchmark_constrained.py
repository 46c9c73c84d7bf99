"""``benchmarks/constrained.py --quick`` runs and ends with its figure (so the benchmark cannot rot)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)


def test_constrained_benchmark_quick(tiny_checkpoint: Path, run_benchmark: Callable[..., str]) -> None:
    text = run_benchmark("constrained", "--quick", "--checkpoint", str(tiny_checkpoint), timeout=220)
    lines = text.strip().splitlines()
    assert re.fullmatch(r"constrained overhead: -?\d+(\.\d+)?%", lines[-1]), lines[-1]
    assert re.search(r"decode without grammar: +\d+\.\d+ tok/s", text)
    assert re.search(r"decode with grammar: +\d+\.\d+ tok/s", text)
    assert re.search(r"per-token overhead: [+-]\d+\.\d+ ms", text)
