"""Driving a token constraint the way a random-weight model would, for the grammar tests."""

from __future__ import annotations

from typing import Any

import torch

VOCAB = 151936  # the tiny checkpoints' vocabulary (Qwen's)


def drive(constraint: Any, seed: int, budget: int) -> list[int]:
    """Drive ``constraint`` with fresh random logits each step (argmax of noise = a uniform pick among the
    allowed tokens): an adversarial stand-in for a random-weight model. Stops when it finishes or at ``budget``."""
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    while len(out) < budget:
        logits = torch.randn(VOCAB, generator=gen)
        constraint.apply(logits)
        token = int(torch.argmax(logits))
        constraint.advance(token)
        out.append(token)
        if constraint.is_finished():
            break
    return out
