"""The local inference engine behind ``LocalQwen``: continuous batching, prefix cache, precision choice.

Public API (see the contract in the package docs)::

    engine = get_engine("path/to/checkpoint", dtype=None)      # one engine per process per model
    handle = engine.submit(prompt_ids, SamplingParams(max_new_tokens=64), constraint=None, priority=0)
    async for token_id in handle: ...
    result = await handle.result()                             # GenerationResult

Importing this package imports torch (it is only imported lazily by ``LocalQwen``).

Design notes (numbers: 2-core AMD EPYC with AVX-512 VNNI/BF16, Qwen2.5-0.5B shape, random weights, machine
shared with other jobs, so absolute figures are noisy; ratios were measured within one run):

* Continuous batching is our own, not transformers' ``generate_batch``/``ContinuousBatchingManager``. Measured
  back to back on 4 requests x 300 prompt tokens x 32 new tokens (fp32): transformers 5.23 ``generate_batch``
  27.4 s, this engine 20.4 s. Beyond speed, the transformers manager is a batch API with its own thread and
  paged cache; it has no priority admission, no cross-request token-level prefix cache with a byte budget, and
  no per-request hook with our ``TokenConstraint`` protocol; its CPU path warns about missing psutil and
  memory sizing. Our loop keeps the plain transformers model and feeds it a duck-typed cache (``SlotKV``) with
  per-row positions and an explicit attention mask, so any transformers Qwen2/Qwen3 model runs unchanged.
* Prefix cache: longest-common-prefix index over token ids (``PrefixCache``), LRU eviction under a byte budget,
  reuse by copying the cached KV into the request's slot; Qwen3's history rewrite simply matches less.
* Decode steps of Qwen2/Qwen3 run through ``_fastdecode.FastDecoder`` (the model's own weights, no HF module
  stack, GQA attention via ``scaled_dot_product_attention(enable_gqa=True)`` with no mask when all rows have
  equal length, int8 q/k/v and gate/up fused into one quantized linear each), and that loop runs as one
  TorchScript module (``_scripted.DecodeStep``: the same ops dispatched from C++; logits bit-identical to the
  module run eagerly):
  int8 batch-1 decode went from 49 (HF forward) to 34 (Python loop) to 18.7 ms/token (TorchScript) in the
  benchmark; prefill keeps the transformers forward. ``Engine(fast_decode=False)`` turns it off; tests check it
  gives the transformers forward's logits and tokens.
* Int8 kernel: ``_int8.Int8Linear`` runs ``torch.ops.tq.linear_i8`` (``_vnni.cpp``, AVX-512 VNNI, weights packed
  16 outputs x 4 k per 64-byte load; built on first use by ``_kernels``). It replaced torch's fbgemm dynamic
  linear wherever it loads: batch-1 decode 22.8 -> 18.5 ms/token in the same benchmark conditions, prefill
  faster too, half the per-matmul error. In the decode step the RMSNorm in front of qkv/gate_up/LM head and the
  residual add after o/down run inside the kernel call, and attention runs ``torch.ops.tq.decode_attn`` (about
  half SDPA's time from 1 to 1,400 positions): step 1.14x -> 1.05x the time of its linears alone. All int8
  weights live in one mapping in execution order (``place_in_arena``), and q/k/v, gate/up fuse as views.
* One OpenMP pool: libgomp gives each thread that runs parallel torch ops its own pool and stops spin-waiting
  once pools outnumber CPUs (then every parallel region pays a futex wake-up: +5 ms per 0.5B decode step on 2
  cores). The engine does its torch set-up in throwaway threads (``in_fresh_thread``) so that its loop thread
  owns the only pool; keep heavy torch work off other long-lived threads of the same process.
* Precision: ``int8`` (int8 weights, activations quantized per call) is the default because it was fastest for
  both prefill and decode here; see ``_loader.DEFAULT_DTYPE`` and ``benchmarks/engine.py``.
"""

from tq_agents.models._engine._engine import Engine
from tq_agents.models._engine._kv import PrefixCache
from tq_agents.models._engine._loader import (
    DEFAULT_DTYPE,
    DTYPES,
    close_all_engines,
    get_engine,
    in_fresh_thread,
    load_model,
    quantize_int8,
)
from tq_agents.models._engine._types import GenerationHandle, GenerationResult, SamplingParams, TokenConstraint

__all__ = [
    "DEFAULT_DTYPE",
    "DTYPES",
    "Engine",
    "GenerationHandle",
    "GenerationResult",
    "PrefixCache",
    "SamplingParams",
    "TokenConstraint",
    "close_all_engines",
    "get_engine",
    "in_fresh_thread",
    "load_model",
    "quantize_int8",
]
