"""A lean decode-step forward for Qwen2/Qwen3 that bypasses the transformers module stack.

One decode step at batch 1 spends most of its non-matmul time in Python: the HF stack builds masks, rotary
tables, output dataclasses and dispatches through several wrapper layers per decoder layer. This module runs
the SAME weights (the model's own ``nn.Linear``/quantized-linear modules and norm weights, so every precision mode
works unchanged) with the minimum of tensor ops per layer:

* RoPE cos/sin are computed once per step for all rows (not per layer);
* new K/V rows are written straight into the engine's :class:`SlotKV` buffer;
* attention reads the slot views with ``scaled_dot_product_attention(enable_gqa=True)`` -- no 14-head
  ``repeat_kv`` copies -- and needs no mask at all when every row has the same length (always at batch 1).

It is used for decode steps only (prefill keeps the HF forward, whose per-call overhead is amortised over the
chunk). :func:`supports` says whether a model qualifies; the engine falls back to the HF forward otherwise.
The engine tests compare its tokens with HF ``generate`` (Qwen2 and Qwen3 tiny checkpoints).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["FastDecoder", "supports"]


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


class _Layer:
    __slots__ = ("down", "eps1", "eps2", "gate", "k", "k_norm", "ln1", "ln2", "o", "q", "q_norm", "up", "v")

    def __init__(self, layer: Any) -> None:
        a, m = layer.self_attn, layer.mlp
        self.q, self.k, self.v, self.o = a.q_proj, a.k_proj, a.v_proj, a.o_proj
        self.gate, self.up, self.down = m.gate_proj, m.up_proj, m.down_proj
        self.ln1, self.eps1 = layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon
        self.ln2, self.eps2 = layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        qn, kn = getattr(a, "q_norm", None), getattr(a, "k_norm", None)
        self.q_norm = (qn.weight, qn.variance_epsilon) if qn is not None else None
        self.k_norm = (kn.weight, kn.variance_epsilon) if kn is not None else None


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    dt = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(dt)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class FastDecoder:
    """``decode(input_ids [B], positions [B], kv) -> fp32 logits [B, V]`` for the engine's decode step."""

    def __init__(self, model: Any) -> None:
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

    def decode(self, input_ids: torch.Tensor, positions: torch.Tensor, kv: Any) -> torch.Tensor:
        b = int(input_ids.shape[0])
        kv_len = kv._kv_len
        x = self.embed(input_ids.view(b, 1))  # [B, 1, H]
        dt = x.dtype
        freqs = positions.view(b, 1).float() * self.inv_freq  # [B, D/2]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scale).to(dt).view(b, 1, 1, -1)
        sin = (emb.sin() * self.rope_scale).to(dt).view(b, 1, 1, -1)
        same_len = b == 1 or bool((positions == positions[0]).all())
        mask = None
        if not same_len:
            mask = (torch.arange(kv_len)[None, :] <= positions[:, None]).view(b, 1, 1, kv_len)
        rows = torch.arange(b)
        nh, nkv, hd = self.heads, self.kv_heads, self.head_dim
        buf = kv.buf
        for i, ly in enumerate(self.layers):
            h = _rms(x, ly.ln1, ly.eps1)
            q = ly.q(h).view(b, 1, nh, hd)
            k = ly.k(h).view(b, 1, nkv, hd)
            v = ly.v(h).view(b, nkv, hd)
            if ly.q_norm is not None:
                q = _rms(q, *ly.q_norm)
            if ly.k_norm is not None:
                k = _rms(k, *ly.k_norm)
            q = q * cos + _rotate_half(q) * sin  # [B, 1, nh, hd]
            k = k * cos + _rotate_half(k) * sin
            kl, vl = buf[i, 0], buf[i, 1]  # [slots, nkv, cap, hd]
            if b == 1:
                p = int(positions[0])
                kl[0, :, p] = k[0, 0]
                vl[0, :, p] = v[0]
            else:
                kl[rows, :, positions] = k[:, 0]
                vl[rows, :, positions] = v
            att = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                kl[:b, :, :kv_len],
                vl[:b, :, :kv_len],
                attn_mask=mask,
                scale=self.scaling,
                enable_gqa=True,
            )  # [B, nh, 1, hd]
            x = x + ly.o(att.transpose(1, 2).reshape(b, 1, nh * hd))
            h = _rms(x, ly.ln2, ly.eps2)
            x = x + ly.down(F.silu(ly.gate(h)) * ly.up(h))
        x = _rms(x, self.norm_w, self.norm_eps)
        return self.lm_head(x).view(b, -1).float()
