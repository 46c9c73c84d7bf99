"""Per-row token selection: greedy, temperature / top-k / top-p with a per-request generator."""

from __future__ import annotations

import torch

from tq_agents.models._engine._types import SamplingParams

__all__ = ["make_generator", "sample_row"]


def make_generator(seed: int | None) -> torch.Generator:
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def sample_row(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> int:
    """Pick one id from a 1-D fp32 logits row (already masked by any constraint). -1 if nothing is allowed."""
    if params.greedy:
        idx = int(torch.argmax(logits))
        return idx if logits[idx] != float("-inf") else -1
    x = logits / params.temperature
    if params.top_k > 0 and params.top_k < x.shape[0]:
        kth = torch.topk(x, params.top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_x, order = torch.sort(x, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        drop = cum - probs > params.top_p  # keep the smallest set whose mass reaches top_p
        sorted_x = sorted_x.masked_fill(drop, float("-inf"))
        x = torch.full_like(x, float("-inf")).scatter(0, order, sorted_x)
    if torch.isinf(x).all():
        return -1
    probs = torch.softmax(x, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))
