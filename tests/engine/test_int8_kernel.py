"""tq's int8 linear kernel (``torch.ops.tq.linear_i8`` via ``Int8Linear``): built and used where the CPU allows,
numerically close to the dequantized matmul, row-independent, fusable without copies, and an explicit (logged)
fallback to torch's fbgemm linear otherwise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from tq_agents.models._engine import _kernels

pytestmark = pytest.mark.timeout(300)

_MISSING = _kernels._cpu_missing()
_CAN_BUILD = not _MISSING and shutil.which(os.environ.get("CXX") or "g++") is not None
needs_kernel = pytest.mark.skipif(
    not _CAN_BUILD,
    reason=f"tq int8 kernel cannot be built here: CPU lacks {_MISSING}" if _MISSING else "no g++ on PATH",
)


@pytest.fixture(scope="module")
def kernel() -> None:
    if os.environ.get("TQ_INT8_KERNEL", "auto") == "fbgemm":
        pytest.skip("TQ_INT8_KERNEL=fbgemm is set for this test run")
    assert _kernels.load_int8_kernel(), _kernels.int8_kernel_status()


@needs_kernel
def test_kernel_is_used_where_the_cpu_and_a_compiler_allow(kernel, tiny_checkpoint):
    from tq_agents.models._engine import load_model
    from tq_agents.models._engine._int8 import Int8Linear

    assert _kernels.int8_kernel_status() == "tq"
    model = load_model(str(tiny_checkpoint), dtype="int8")
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert not linears and len(int8) == 2 * 7 + 1  # q k v o gate up down per layer, and the LM head


def _reference(lin: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(x, lin.weight, lin.bias)


@needs_kernel
@pytest.mark.parametrize(("n", "k"), [(1152, 896), (40, 24), (37, 30), (16, 4864)])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_the_dequantized_matmul(kernel, n, k, m, bias):
    from tq_agents.models._engine._int8 import Int8Linear

    g = torch.Generator().manual_seed(n * 1000 + k + m)
    lin = torch.nn.Linear(k, n, bias=bias).requires_grad_(False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n, k, generator=g) * 0.05)
        if bias:
            lin.bias.copy_(torch.randn(n, generator=g))
    q8 = Int8Linear.from_float(lin)
    x = torch.randn(m, k, generator=g)
    q, scale = q8.int8_weight()
    assert q.dtype == torch.int8 and q.shape == (n, k)
    deq = torch.nn.functional.linear(x, q.float() * scale[:, None], lin.bias)  # same int8 weights, fp32 activations
    got = q8(x)
    assert got.shape == (m, n) and got.dtype == torch.float32
    # activations are quantized per row to 8 bits: about 0.5% relative error (fbgemm's 7-bit per-tensor: ~1%)
    assert float((got - deq).norm() / deq.norm()) < 0.01
    assert float((got - deq).abs().max() / deq.abs().max()) < 0.03
    assert float((got - _reference(lin, x)).norm() / _reference(lin, x).norm()) < 0.02
    # any leading shape
    got3 = q8(x.view(1, m, k))
    assert torch.equal(got3.view(m, n), got)


@needs_kernel
def test_rows_are_independent_of_the_batch(kernel):
    """Each row is quantized on its own: a row's output does not depend on the other rows (batched decode gives
    the same tokens as one-by-one)."""
    from tq_agents.models._engine._int8 import Int8Linear

    lin = torch.nn.Linear(896, 1152)
    q8 = Int8Linear.from_float(lin)
    x = torch.randn(7, 896)
    x[3] *= 100  # one row with a much larger range must not change the others
    full = q8(x)
    for i in range(7):
        assert torch.equal(q8(x[i : i + 1])[0], full[i])


@needs_kernel
def test_fused_linears_share_weights_and_equal_the_parts(kernel):
    from tq_agents.models._engine._int8 import Int8Linear, cat_int8, place_in_arena

    parts = [Int8Linear.from_float(torch.nn.Linear(64, n)) for n in (64, 16, 16)]
    x = torch.randn(2, 64)
    want = torch.cat([p(x) for p in parts], -1)
    fused = cat_int8(parts)
    assert torch.equal(fused(x), want)
    assert torch.equal(torch.cat([p(x) for p in parts], -1), want)  # the parts still compute the same
    storage = fused.wp.untyped_storage().data_ptr()
    assert all(p.wp.untyped_storage().data_ptr() == storage for p in parts)  # held once
    arena = [Int8Linear.from_float(torch.nn.Linear(64, n)) for n in (32, 16, 48)]
    want = torch.cat([p(x) for p in arena], -1)
    place_in_arena(arena)
    assert torch.equal(torch.cat([p(x) for p in arena], -1), want)  # moved, same results
    fused = cat_int8(arena)
    assert fused.wp.data_ptr() == arena[0].wp.data_ptr()  # adjacent in the arena: the fused weight is a view
    assert torch.equal(fused(x), want)
    odd = [Int8Linear.from_float(torch.nn.Linear(64, n, bias=b)) for n, b in ((24, True), (8, False))]
    want = torch.cat([p(x) for p in odd], -1)
    assert torch.equal(cat_int8(odd)(x), want)  # row counts not a multiple of 16: a copy, same result


def test_packed_bytes_are_what_a_forward_reads():
    from tq_agents.models._engine._int8 import Int8Linear

    q8 = Int8Linear(torch.ones(40, 24, dtype=torch.int8), torch.ones(40), torch.zeros(40))
    assert tuple(q8.wp.shape) == (3, 6, 64)  # 40 rows padded to 48, in blocks of 16; K/4 = 6
    assert q8.nbytes() == 48 * 24 + 3 * 48 * 4


def _load_int8_in_subprocess(tiny_checkpoint, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = (
        "import logging; logging.basicConfig(level=logging.WARNING)\n"
        "from tq_agents.models._engine import load_model\n"
        f"m = load_model({str(tiny_checkpoint)!r}, dtype='int8')\n"
        "print('LINEAR', type(m.model.layers[0].mlp.up_proj).__module__)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=240
    )


def test_fbgemm_fallback_is_explicit(tiny_checkpoint):
    proc = _load_int8_in_subprocess(tiny_checkpoint, {"TQ_INT8_KERNEL": "fbgemm"})
    assert proc.returncode == 0, proc.stderr
    assert "LINEAR torch.ao.nn.quantized.dynamic" in proc.stdout
    assert "int8 linears use torch's fbgemm kernel, not tq's: TQ_INT8_KERNEL=fbgemm is set" in proc.stderr


@needs_kernel
def test_a_failed_build_falls_back_with_the_reason(tiny_checkpoint, tmp_path):
    fake = tmp_path / "fake-cxx"
    fake.write_text("#!/bin/sh\necho 'fake compiler: broken on purpose' >&2\nexit 3\n")
    fake.chmod(0o755)
    env = {"CXX": str(fake), "TQ_KERNEL_CACHE": str(tmp_path / "cache"), "TQ_INT8_KERNEL": "auto"}
    proc = _load_int8_in_subprocess(tiny_checkpoint, env)
    assert proc.returncode == 0, proc.stderr
    assert "LINEAR torch.ao.nn.quantized.dynamic" in proc.stdout
    assert "building or loading it failed" in proc.stderr and "broken on purpose" in proc.stderr
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built left in the cache


@needs_kernel
@pytest.mark.parametrize("m", [1, 3, 17])
def test_fused_entry_point_equals_the_separate_ops(kernel, m):
    """The decode step's ``fused`` call (RMSNorm / SwiGLU in front, residual add after, in one kernel call)
    computes what PlainLinear computes with separate torch ops, to float rounding."""
    import torch.nn.functional as F

    from tq_agents.models._engine._int8 import Int8Linear
    from tq_agents.models._engine._scripted import PlainLinear, _rms

    g = torch.Generator().manual_seed(m)
    q8 = Int8Linear.from_float(torch.nn.Linear(40, 48).requires_grad_(False))
    plain = PlainLinear(q8)
    x = torch.randn(m, 40, generator=g) * 3
    norm_w = torch.rand(40, generator=g) + 0.5
    res = torch.randn(m, 48, generator=g)
    want = res + q8(_rms(x, norm_w, 1e-6))
    got = q8.fused(x, norm_w, 1e-6, res)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4)
    assert torch.allclose(plain.fused(x, norm_w, 1e-6, res), want, rtol=1e-6, atol=1e-6)
    gu = torch.randn(m, 80, generator=g) * 4  # [gate, up]: silu(gate) * up feeds the 40-wide linear
    want = res + q8(F.silu(gu[:, :40]) * gu[:, 40:])
    assert torch.allclose(q8.fused(gu, None, 0.0, res, True), want, rtol=1e-4, atol=1e-4)
    assert torch.allclose(plain.fused(gu, None, 0.0, res, True), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match="even width"):
        q8.fused(torch.randn(m, 81), None, 0.0, None, True)


@needs_kernel
@pytest.mark.parametrize("b", [1, 3])
@pytest.mark.parametrize("kv_len", [1, 5, 40, 333])
def test_decode_attention_matches_sdpa(kernel, b, kv_len):
    """tq's decode attention on the engine's strided KV slot views, with equal rows (no mask) and with per-row
    lengths (the mask SDPA would take), equals SDPA with GQA to float rounding."""
    from tq_agents.models._engine._scripted import SdpaAttention, TqAttention

    g = torch.Generator().manual_seed(b * 1000 + kv_len)
    nh, nkv, hd = 14, 2, 64
    buf = torch.randn(2, 4, nkv, 512, hd, generator=g)  # [k/v, slots, kv heads, max len, head dim]
    k, v = buf[0, :b, :, :kv_len], buf[1, :b, :, :kv_len]
    q = torch.randn(b, 2 * nh, hd, generator=g)[:, :nh]  # a strided slice, as in the step
    scale = hd**-0.5
    tq, sdpa = TqAttention(scale), SdpaAttention(scale)
    want = sdpa(q, k, v, None, None).reshape(b, nh, hd)
    assert torch.allclose(tq(q, k, v, None, None), want, atol=2e-6)
    pos = torch.tensor([max(0, kv_len - 1 - 3 * i) for i in range(b)])
    mask = (torch.arange(kv_len)[None, :] <= pos[:, None]).view(b, 1, 1, kv_len)
    want = sdpa(q, k, v, mask, pos + 1).reshape(b, nh, hd)
    assert torch.allclose(tq(q, k, v, mask, pos + 1), want, atol=2e-6)
    with pytest.raises(RuntimeError, match="outside"):
        torch.ops.tq.decode_attn(q, k, v, scale, torch.full((b,), kv_len + 1))
