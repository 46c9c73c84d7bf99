"""A lean decode-step forward for Qwen2/Qwen3 that bypasses the transformers module stack.

One decode step at batch 1 spends most of its non-matmul time in Python: the HF stack builds masks, rotary
tables, output dataclasses and dispatches through several wrapper layers per decoder layer. This module runs
the SAME weights (the model's own ``nn.Linear``/quantized-linear modules and norm weights, so every precision mode
works unchanged) with the minimum of tensor ops per layer:

* RoPE cos/sin are computed once per step for all rows (not per layer);
* new K/V rows are written straight into the engine's :class:`SlotKV` buffer;
* attention reads the slot views with ``scaled_dot_product_attention(enable_gqa=True)`` -- no 14-head
  ``repeat_kv`` copies -- and needs no mask at all when every row has the same length (always at batch 1); in
  int8 mode with tq's kernel, ``torch.ops.tq.decode_attn`` instead (``_scripted.TqAttention``).

The per-layer loop is one module (``_scripted.DecodeStep``), run as TorchScript (the same ops, dispatched from C++,
not Python); when scripting fails the same module runs eagerly.

It is used for decode steps only (prefill keeps the HF forward, whose per-call overhead is amortised over the
chunk). :func:`supports` says whether a model qualifies; the engine falls back to the HF forward otherwise.
The engine tests compare its tokens with HF ``generate`` (Qwen2 and Qwen3 tiny checkpoints).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from tq_agents.models._engine import _scripted
from tq_agents.models._engine._scripted import CatLinear, DecodeStep

__all__ = ["FastDecoder", "supports"]

log = logging.getLogger(__name__)


def supports(model: Any) -> bool:
    """Whether :class:`FastDecoder` can run this model (Qwen2/Qwen3 decoder, default RoPE, SiLU MLP)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", "") not in ("qwen2", "qwen3"):
        return False
    rope = getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    if rope_type != "default" or getattr(cfg, "hidden_act", "silu") != "silu":
        return False
    inner = getattr(model, "model", None)
    return inner is not None and hasattr(inner, "layers") and hasattr(inner, "rotary_emb")


def _fuse(mods: list[Any]) -> Any:
    """One linear computing ``cat([m(x) for m in mods], -1)`` from the same weights.

    tq's ``Int8Linear``: one linear over the concatenated packed rows; the parts then view their rows of it
    (weights held once; see ``_int8.cat_int8``). torch's dynamic-quantized int8 linear (the fbgemm fallback): a
    new one whose int8 rows and per-row scales are the originals' (bit-identical results, one activation
    quantization and one kernel call instead of three; the fused weights are held twice, once per forward path).
    Float linears are not fused: measured no faster at fp32 here, so they run one by one (:class:`CatLinear`)
    and the model is left untouched.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynLinear

    from tq_agents.models._engine._int8 import Int8Linear, cat_int8

    if all(isinstance(m, Int8Linear) for m in mods):
        return cat_int8(mods)  # shares the parts' weights when their row counts allow
    if all(isinstance(m, DynLinear) for m in mods):
        ws = [m.weight() for m in mods]
        if all(w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric) for w in ws):
            qw = torch._make_per_channel_quantized_tensor(
                torch.cat([w.int_repr() for w in ws], 0),
                torch.cat([w.q_per_channel_scales() for w in ws], 0).double(),
                torch.cat([w.q_per_channel_zero_points() for w in ws], 0).long(),
                0,
            )
            biases = [m.bias() for m in mods]
            bias = torch.cat(biases, 0).detach() if all(x is not None for x in biases) else None
            fused = DynLinear(qw.shape[1], qw.shape[0], bias_=bias is not None, dtype=torch.qint8)
            fused.set_weight_bias(qw, bias)
            return fused
    return CatLinear(mods)


class _Layer:
    __slots__ = ("down", "eps1", "eps2", "gate_up", "k_norm", "ln1", "ln2", "o", "q_norm", "qkv")

    def __init__(self, layer: Any) -> None:
        a, m = layer.self_attn, layer.mlp
        self.qkv = _fuse([a.q_proj, a.k_proj, a.v_proj])
        self.gate_up = _fuse([m.gate_proj, m.up_proj])
        self.o, self.down = a.o_proj, m.down_proj
        self.ln1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.ln2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
        self.q_norm = (qn.weight, qn.variance_epsilon) if qn is not None else None
        self.k_norm = (kn.weight, kn.variance_epsilon) if kn is not None else None


class FastDecoder:
    """``decode(input_ids [B], positions [B], kv) -> fp32 logits [B, V]`` for the engine's decode step."""

    def __init__(self, model: Any, *, script: bool = True) -> None:
        cfg = model.config
        inner = model.model
        self.embed = inner.embed_tokens
        self.layers = [_Layer(layer) for layer in inner.layers]
        self.norm_w, self.norm_eps = inner.norm.weight, inner.norm.variance_epsilon
        self.lm_head = model.lm_head
        self.heads = int(cfg.num_attention_heads)
        self.kv_heads = int(getattr(cfg, "num_key_value_heads", self.heads))
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads)
        self.scaling = self.head_dim**-0.5
        rot = inner.rotary_emb
        self.inv_freq = rot.inv_freq.float()
        self.rope_scale = float(getattr(rot, "attention_scaling", 1.0))
        self.step = DecodeStep(self)  # the layer loop, run eagerly unless scripting works
        self.scripted: Any = None
        if script:
            try:
                self.scripted = _scripted.script_step(self.step)
            except Exception as e:  # a torch without TorchScript, or a module it cannot script
                log.warning("decode step runs in Python (TorchScript failed: %s: %s)", type(e).__name__, e)

    def decode(self, input_ids: torch.Tensor, positions: torch.Tensor, kv: Any) -> torch.Tensor:
        b = int(input_ids.shape[0])
        kv_len = kv._kv_len
        x = self.embed(input_ids.view(b))  # [B, H]
        freqs = positions.view(b, 1).float() * self.inv_freq  # [B, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(x.dtype).view(b, 1, -1)
        sin = (emb.sin() * self.rope_scale).to(x.dtype).view(b, 1, -1)
        mask = None
        if b > 1 and not bool((positions == positions[0]).all()):
            mask = (torch.arange(kv_len)[None, :] <= positions[:, None]).view(b, 1, 1, kv_len)
        step = self.scripted if self.scripted is not None else self.step
        return step(x, cos, sin, kv.buf, positions, int(positions[0]), kv_len, mask)  # type: ignore[no-any-return]
