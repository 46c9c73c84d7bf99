"""The engine benchmark and the GGUF converter cannot rot: run ``benchmarks/engine.py --quick`` for real."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.timeout(240)
def test_engine_benchmark_quick_runs(tmp_path, run_benchmark):
    out = run_benchmark("engine", "--quick", "--workdir", str(tmp_path), timeout=230, env={"PYTHONPATH": str(ROOT)})
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert lines[-2].startswith("speedup tq/naive: ")
    assert float(lines[-2].split(": ")[1]) > 0
    assert lines[-1].startswith("speedup tq/llama.cpp-q8: ")
    assert "tq engine" in out and "naive HF generate" in out and "batch-1 decode" in out
    if _llama_cpp_available():
        assert "llama.cpp Q8_0" in out and "llama.cpp F16" in out
        assert float(lines[-1].split(": ")[1]) > 0
    else:
        assert "llama.cpp: skipped: llama_cpp is not importable" in out


@pytest.mark.timeout(120)
def test_gguf_conversion_matches_transformers_logits(tiny_checkpoint, tmp_path):
    """Our qwen2 GGUF (F16, Q8_0) run by llama.cpp gives the same last-token logits as transformers."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python (the `bench` extra) is not installed")
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _gguf_convert import convert_qwen2

    model = AutoModelForCausalLM.from_pretrained(str(tiny_checkpoint), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 150_000, (60,), generator=g).tolist()
    with torch.no_grad():
        ref = model(torch.tensor([prompt])).logits[0, -1].numpy()
    for qtype, tol in (("F16", 0.9999), ("Q8_0", 0.999)):
        path = convert_qwen2(tiny_checkpoint, tmp_path / f"tiny-{qtype}.gguf", qtype=qtype)
        llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
        llm.eval(prompt)
        got = np.asarray(llm.scores[llm.n_tokens - 1])
        cos = float(got @ ref / np.linalg.norm(got) / np.linalg.norm(ref))
        assert cos > tol, (qtype, cos)
        assert int(got.argmax()) == int(ref.argmax())
        del llm
