"""``tq_sdpa``: transformers' sdpa attention, except single-token decode steps with an explicit mask.

For a decode step (one query token per row, a boolean ``[B, 1, 1, L]`` mask over each row's own KV), torch's
fused CPU kernel is tuned for long query blocks; two batched matmuls over the grouped query heads (GQA packed,
no KV repeat) read the KV once and are faster here. Every other call goes to the stock sdpa function, so a
model switched to ``tq_sdpa`` behaves exactly as with ``sdpa`` outside the engine (e.g. under ``generate``).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["NAME", "register"]

NAME = "tq_sdpa"
_registered = False


def _tq_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, h, q_len, d = query.shape
    if (
        q_len != 1
        or attention_mask is None
        or attention_mask.dtype != torch.bool
        or attention_mask.shape[1] != 1
        or attention_mask.shape[2] != 1
        or kwargs.get("sliding_window")
        or module.training
    ):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    kvh = key.shape[1]
    scale = scaling if scaling is not None else d**-0.5
    q = query.reshape(b, kvh, h // kvh, d)  # the query heads of one KV head attend together
    scores = torch.matmul(q, key.transpose(-1, -2)).mul_(scale)  # [b, kvh, rep, L]
    scores.masked_fill_(~attention_mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs, value)  # [b, kvh, rep, d]
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register ``tq_sdpa`` with transformers (idempotent) and return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(NAME, _tq_sdpa)
        _registered = True
    return NAME
