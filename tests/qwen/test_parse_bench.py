"""benchmarks/parse.py --quick runs, and its seeded corpus shows parse() beating vLLM's hermes rule."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest


@pytest.mark.timeout(120)
def test_parse_benchmark_quick(run_benchmark: Callable[..., str]) -> None:
    out = run_benchmark("parse", "--quick", timeout=110)
    lines = out.strip().splitlines()
    assert lines[0].startswith("corpus: 300 completions")
    assert any(line.startswith("µs per parse") for line in lines)
    m = re.fullmatch(r"recovered tq/hermes: (\d\.\d{3})/(\d\.\d{3})", lines[-1])
    assert m, lines[-1]
    tq, hermes = float(m.group(1)), float(m.group(2))
    # the corpus is seeded: these are properties of the parser, not of timing
    assert tq >= 0.9, out
    assert tq > hermes + 0.3, out
    spurious = next(line for line in lines if line.startswith("spurious calls"))
    assert re.search(r"tq 0,", spurious), spurious  # no call planned inside <think> is ever returned
