"""Loading a checkpoint at a chosen precision, and the one-engine-per-process cache."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tq_agents.errors import ConfigError, ModelUnavailableError

__all__ = ["DEFAULT_DTYPE", "DTYPES", "get_engine", "in_fresh_thread", "load_model", "quantize_int8"]

log = logging.getLogger("tq_agents.engine")

T = TypeVar("T")

DTYPES = ("fp32", "bf16", "int8")
# Chosen by measurement (benchmarks/engine.py, "precision" table, 2-core AVX-512 VNNI CPU, tq's int8 kernel):
# int8 had the best prefill AND decode speed (prefill 795 vs 213 tok/s fp32 / 404 bf16; batch-1 decode 16.1 vs
# 136.5 / 78.3 ms), so a prompt-heavy agent turn is ~6x faster than fp32 (with torch's fbgemm int8: ~3.8x).
# Quality: logits within 6% (relative L2) of fp32 on the tiny checkpoint, greedy tokens identical
# (tests/engine/test_precision.py). Pass dtype="fp32" for exactness.
DEFAULT_DTYPE = "int8"


def in_fresh_thread(fn: Callable[[], T], *, name: str = "tq-load") -> T:
    """Run ``fn`` in a new short-lived thread and return its result (its exception is re-raised here).

    Why: torch's OpenMP (libgomp) gives every thread that runs a parallel op its own worker pool, kept until that
    thread exits. Once a process has more OpenMP threads than CPUs, libgomp stops spin-waiting and every parallel
    region of every thread pays a futex wake-up: measured on 2 cores, a parallel ``add`` 12 -> 56 us, the int8
    batch-1 decode step of the Qwen2.5-0.5B shape 21 -> 26 ms, once the main thread had run one parallel op (model
    loading does) and the engine thread decoded. So the engine does its torch set-up work (loading, quantizing,
    KV buffers, fusing) in throwaway threads, leaving the engine thread's pool the only one; code that embeds the
    engine should likewise keep heavy torch work off long-lived threads (``benchmarks/engine.py`` does).
    """
    box: list[Any] = []

    def target() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # re-raised in the caller's thread
            box.append((False, e))

    t = threading.Thread(target=target, name=name, daemon=True)
    t.start()
    t.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _resolve(path_or_id: str | Path) -> Path:
    from tq_agents.models._hub import resolve_model_path

    return resolve_model_path(str(path_or_id))


def quantize_int8(model: Any) -> Any:
    """Int8 weights (one scale per output row) for every ``nn.Linear`` incl. the LM head, in place.

    With tq's kernel (``_kernels.py``: AVX-512 VNNI, built on first use) each linear becomes an ``Int8Linear``:
    activations quantized per row per call, int8 matmul, fp32 out. Measured on the Qwen2.5-0.5B shapes it reads
    35-40 GB/s at batch 1 against fbgemm's 18-29 and is faster at prefill sizes too, with half the per-matmul error.
    Without it (no VNNI, no compiler, or ``TQ_INT8_KERNEL=fbgemm``; a warning says which) torch's x86 dynamic
    int8 linear (fbgemm) is used. torchao's int8 weight-only kernels were several times slower here, and so was
    torch's own ``_weight_int8pack_mm`` at batch 1 (0.6 GB/s with fp32 activations on the 151936x896 LM head).
    """
    import warnings

    import torch

    from tq_agents.models._engine._kernels import load_int8_kernel

    if load_int8_kernel():
        from tq_agents.models._engine._int8 import Int8Linear, place_in_arena

        order = {id(mod): i for i, mod in enumerate(model.modules())}  # q k v o gate up down per layer, LM head
        targets = [
            (parent, name, child)
            for parent in model.modules()
            for name, child in parent.named_children()
            if isinstance(child, torch.nn.Linear)
        ]
        targets.sort(key=lambda t: order[id(t[2])])
        converted: list[Any] = []
        with torch.inference_mode(False), torch.no_grad():
            for parent, name, child in targets:
                q8 = Int8Linear.from_float(child)
                setattr(parent, name, q8)
                converted.append(q8)
            place_in_arena(converted)  # in execution order: one sequential stream per decode step
        return model

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def load_model(path_or_id: str | Path, *, dtype: str | None = None, device: str = "cpu") -> Any:
    """Load a causal LM for the engine.

    ``dtype``: ``"fp32"``, ``"bf16"``, ``"int8"`` (int8 linear weights, dynamically quantized activations) or
    ``None`` for
    :data:`DEFAULT_DTYPE`. Raises ``ModelUnavailableError`` when the checkpoint cannot be found or read, and
    ``ConfigError`` for an unknown dtype/device.
    """
    dtype = dtype or DEFAULT_DTYPE
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)} (or None for the default)")
    if device != "cpu":
        raise ConfigError(f"device {device!r} is not supported by the local engine yet: use device='cpu'")
    path = _resolve(path_or_id)
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32

    def load() -> Any:
        try:
            model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype, attn_implementation="sdpa")
        except Exception as e:
            raise ModelUnavailableError(
                f"could not load the checkpoint at {path}: {type(e).__name__}: {e}".splitlines()[0],
                hint="check that the directory holds config.json and *.safetensors of a causal LM",
            ) from e
        model.eval()
        if dtype == "int8":
            quantize_int8(model)
        model.tq_dtype = dtype
        return model

    return in_fresh_thread(load)  # not in the caller's thread: see in_fresh_thread


_ENGINES: dict[tuple[str, str, str], Any] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(path_or_id: str | Path, *, dtype: str | None = None, device: str = "cpu", **engine_kwargs: Any) -> Any:
    """The process-wide engine for ``(model, dtype, device)``; created (and the model loaded) on first use.

    ``engine_kwargs`` (``max_batch_size``, ``prefill_chunk``, ``cache_budget_bytes``, ...) apply only when the
    engine is created.
    """
    from tq_agents.models._engine._engine import Engine

    key = (str(_resolve(path_or_id)), dtype or DEFAULT_DTYPE, device)
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is None or eng._closed:
            model = load_model(key[0], dtype=key[1], device=device)
            eng = Engine(model, name=Path(key[0]).name, **engine_kwargs)
            _ENGINES[key] = eng
        return eng


def close_all_engines() -> None:
    """Close every cached engine (tests, interpreter shutdown)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for e in engines:
        e.close()
