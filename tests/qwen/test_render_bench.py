"""benchmarks/render.py --quick runs and reports render() and Jinja timings for the same outputs."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest


@pytest.mark.timeout(180)
def test_render_benchmark_quick(run_benchmark: Callable[..., str]) -> None:
    lines = run_benchmark("render", "--quick", timeout=170).strip().splitlines()
    assert re.match(r"corpus: \d+ chats over 3 families", lines[0]), lines[0]
    assert re.fullmatch(r"render µs tq/jinja: \d+\.\d/\d+\.\d", lines[-1]), lines[-1]
