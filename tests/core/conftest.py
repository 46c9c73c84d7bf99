"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tq_agents import MemoryRunStore, RunStore, SQLiteRunStore


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """Each run-store backend in turn (the conformance suite runs on both)."""
    s: RunStore = SQLiteRunStore(tmp_path / "runs.sqlite") if request.param == "sqlite" else MemoryRunStore()
    yield s
    s.close()
