"""benchmarks/render.py --quick runs and reports render() and Jinja timings for the same outputs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_render_benchmark_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert re.match(r"corpus: \d+ chats over 3 families", lines[0]), lines[0]
    assert re.fullmatch(r"render µs tq/jinja: \d+\.\d/\d+\.\d", lines[-1]), lines[-1]
