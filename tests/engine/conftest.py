"""Fixtures of the engine tests: the project's tiny random-weight Qwen checkpoints through real transformers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="engine tests need the `local` extra (torch, transformers)")


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """The project's tiny random-weight Qwen2.5 checkpoint loaded by the engine's own loader (fp32, sdpa)."""
    from tq_agents.models._engine import load_model

    return load_model(str(tiny_checkpoint), dtype="fp32")


@pytest.fixture(scope="session")
def tiny_model_qwen3(tiny_checkpoint_qwen3):
    """The tiny Qwen3 checkpoint (q/k norms, explicit head_dim) through the same loader."""
    from tq_agents.models._engine import load_model

    return load_model(str(tiny_checkpoint_qwen3), dtype="fp32")


@pytest.fixture
def make_engine(tiny_model):
    """Build engines on the tiny model and close them at the end of the test."""
    from tq_agents.models._engine import Engine

    made = []

    def _make(**kw):
        eng = Engine(tiny_model, **kw)
        made.append(eng)
        return eng

    yield _make
    for e in made:
        e.close()


@pytest.fixture(scope="session")
def rand_prompt():
    """``rand_prompt(n, seed)``: n reproducible random token ids of the tiny vocab."""

    def _rand(n: int, seed: int, vocab: int = 512) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return [int(x) for x in torch.randint(0, vocab, (n,), generator=g)]

    return _rand
