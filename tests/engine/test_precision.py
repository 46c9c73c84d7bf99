"""Precision modes: bf16 and int8 stay close to fp32; loader errors; one engine per process per model."""

from __future__ import annotations

import pytest
import torch

from tq_agents.errors import ConfigError, ModelUnavailableError
from tq_agents.models._engine import (
    DEFAULT_DTYPE,
    DTYPES,
    Engine,
    SamplingParams,
    close_all_engines,
    get_engine,
    load_model,
)
from tq_agents.models._engine._int8 import Int8Linear

pytestmark = pytest.mark.timeout(180)

# Stated tolerances (relative L2 error of the last-position logits vs fp32 on a fixed 48-token prompt).
TOLERANCE = {"bf16": 0.02, "int8": 0.06}
GREEDY_MATCH_TOKENS = 16


@pytest.fixture(scope="module")
def fixed_prompt() -> torch.Tensor:
    return torch.randint(0, 150_000, (1, 48), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_logits_within_tolerance_of_fp32(tiny_checkpoint, tiny_model, fixed_prompt, dtype):
    model = load_model(str(tiny_checkpoint), dtype=dtype)
    with torch.inference_mode():
        ref = tiny_model(fixed_prompt).logits[0, -1].float()
        got = model(fixed_prompt).logits[0, -1].float()
    rel = float((got - ref).norm() / ref.norm())
    assert rel < TOLERANCE[dtype], f"{dtype}: relative logits error {rel:.4f} >= {TOLERANCE[dtype]}"
    assert int(got.argmax()) == int(ref.argmax())
    if dtype == "int8":  # really quantized: the linears hold int8 weights, the embedding stays fp32
        up = model.model.layers[0].mlp.up_proj
        if isinstance(up, Int8Linear):
            assert up.wp.dtype == torch.int8 and model.lm_head.wp.dtype == torch.int8
        else:
            assert up.weight().dtype == torch.qint8
        assert model.model.embed_tokens.weight.dtype == torch.float32
    if dtype == "bf16":
        assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_greedy_tokens_match_fp32(tiny_checkpoint, tiny_model, rand_prompt, dtype):
    model = load_model(str(tiny_checkpoint), dtype=dtype)
    prompts = [rand_prompt(30, seed=100 + i, vocab=150_000) for i in range(3)]
    params = SamplingParams(max_new_tokens=GREEDY_MATCH_TOKENS)
    with Engine(tiny_model, max_batch_size=3) as ref_eng, Engine(model, max_batch_size=3) as eng:
        want = [h.wait(60).token_ids for h in [ref_eng.submit(p, params) for p in prompts]]
        got = [h.wait(60).token_ids for h in [eng.submit(p, params) for p in prompts]]
    assert got == want


def test_loader_errors_are_clear(tiny_checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        load_model(str(tiny_checkpoint), dtype="fp8")
    with pytest.raises(ConfigError, match="device 'cuda'"):
        load_model(str(tiny_checkpoint), device="cuda")
    with pytest.raises(ModelUnavailableError):
        load_model(str(tmp_path / "nope"))
    assert DEFAULT_DTYPE in DTYPES


def test_get_engine_is_one_per_process_per_model(tiny_checkpoint):
    try:
        a = get_engine(str(tiny_checkpoint), dtype="fp32", max_batch_size=2)
        b = get_engine(str(tiny_checkpoint) + "/", dtype="fp32")
        assert a is b
        c = get_engine(str(tiny_checkpoint), dtype="bf16")
        assert c is not a
        res = a.submit([1, 2, 3], SamplingParams(max_new_tokens=2)).wait(60)
        assert len(res.token_ids) == 2
    finally:
        close_all_engines()
    assert a._closed and c._closed
    d = get_engine(str(tiny_checkpoint), dtype="fp32")
    try:
        assert d is not a  # a closed engine is replaced, not handed out again
    finally:
        close_all_engines()
