"""benchmarks/parse.py --quick runs, and its seeded corpus shows parse() beating vLLM's hermes rule."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_parse_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "parse.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("corpus: 300 completions")
    assert any(line.startswith("µs per parse") for line in lines)
    m = re.fullmatch(r"recovered tq/hermes: (\d\.\d{3})/(\d\.\d{3})", lines[-1])
    assert m, lines[-1]
    tq, hermes = float(m.group(1)), float(m.group(2))
    # the corpus is seeded: these are properties of the parser, not of timing
    assert tq >= 0.9, proc.stdout
    assert tq > hermes + 0.3, proc.stdout
    spurious = next(line for line in lines if line.startswith("spurious calls"))
    assert re.search(r"tq 0,", spurious), spurious  # no call planned inside <think> is ever returned
