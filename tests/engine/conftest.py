"""Fixtures of the engine tests: a small random-weight Qwen2 model in memory (real transformers modules)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="engine tests need the `local` extra (torch, transformers)")


@pytest.fixture(scope="session")
def tiny_model():
    """A 2-layer Qwen2ForCausalLM with random weights (GQA: 4 query heads, 2 KV heads), fp32, sdpa."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(1234)
    cfg = Qwen2Config(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(cfg).eval()


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
