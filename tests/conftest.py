"""Shared pytest fixtures for the whole suite.

``tiny_checkpoint`` / ``tiny_checkpoint_qwen3`` / ``tiny_checkpoint_qwen3_coder``: random-weight Qwen
checkpoints with the real Qwen tokenizer and the project's chat templates, built once per test session
(about a second each; the tokenizer itself is cached under the user cache dir after its first build).

``run_benchmark``: runs ``benchmarks/NAME.py`` (usually with ``--quick``) in a subprocess, asserts it exited 0
and returns its stdout — every benchmark has a test through it, so none of them can rot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# Library runs without ``store=`` are recorded in the per-user default SQLite store (``default_store_path()``,
# overridden by ``$TQ_STORE``): point it at a throwaway file so the suite never writes into the real home.
if not os.environ.get("TQ_STORE"):
    os.environ["TQ_STORE"] = os.path.join(tempfile.mkdtemp(prefix="tq-test-store-"), "runs.sqlite")


ROOT = Path(__file__).resolve().parents[1]


def _build(tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    from tq_agents.models.qwen import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp(f"tiny-{family}"), family=family, shape="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random-weight Qwen2.5 checkpoint (Qwen2ForCausalLM, 2 layers, hidden 64)."""
    return _build(tmp_path_factory, "qwen2.5")


@pytest.fixture(scope="session")
def tiny_checkpoint_qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random-weight Qwen3 checkpoint (Qwen3ForCausalLM, 2 layers, hidden 64)."""
    return _build(tmp_path_factory, "qwen3")


@pytest.fixture(scope="session")
def tiny_checkpoint_qwen3_coder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny Qwen3 checkpoint carrying the Qwen3-Coder chat template (XML tool calls)."""
    return _build(tmp_path_factory, "qwen3-coder")


@pytest.fixture(scope="session")
def run_benchmark() -> Callable[..., str]:
    """``run_benchmark(name, *args, timeout=..., env=None) -> stdout`` for ``benchmarks/<name>.py``.

    Runs from the repo root; ``env`` adds variables to the current environment. A non-zero exit fails the
    test with the tails of stdout and stderr.
    """

    def run(name: str, *args: str, timeout: float, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    return run
