"""Fixtures of the backend tests: one shared LocalQwen per tiny checkpoint (the engine is per process anyway)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch", reason="backend tests need the `local` extra (torch, transformers, llguidance)")


@pytest.fixture(scope="session")
def local_qwen(tiny_checkpoint: Path):
    """``LocalQwen`` over the tiny Qwen2.5 checkpoint, loaded once."""
    from tq_agents.models.local import LocalQwen

    return LocalQwen(str(tiny_checkpoint), max_tokens=256).load()


@pytest.fixture(scope="session")
def local_qwen3(tiny_checkpoint_qwen3: Path):
    """``LocalQwen`` over the tiny Qwen3 checkpoint, loaded once."""
    from tq_agents.models.local import LocalQwen

    return LocalQwen(str(tiny_checkpoint_qwen3), max_tokens=256).load()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests of this directory with ``asyncio.run`` (no async plugin is installed)."""
    import asyncio
    import inspect

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True
