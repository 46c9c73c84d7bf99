"""KV storage: per-slot buffers the model writes into, and the token-level prefix cache.

``SlotKV`` is a duck-typed transformers ``Cache``: the attention layers call ``update(k, v, layer_idx)``; it
writes the new keys/values of each row at that row's own position and returns the row views the attention
reads (the engine passes an explicit mask, so rows of different lengths share one batched forward).

Layout of the buffer: ``[layers, 2 (k/v), slots, kv_heads, capacity, head_dim]``. Decoding sequences occupy
slots ``0..B-1`` (contiguous, so the batch view is a slice, not a gather); the sequence being prefilled uses
one more slot.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PrefixCache", "SlotKV"]


class SlotKV:
    """Fixed-slot KV buffers with per-row lengths, used as ``past_key_values`` by the engine."""

    is_compileable = False

    def __init__(
        self, *, layers: int, slots: int, kv_heads: int, head_dim: int, dtype: torch.dtype, capacity: int = 512
    ) -> None:
        self.layers, self.slots, self.kv_heads, self.head_dim, self.dtype = layers, slots, kv_heads, head_dim, dtype
        self.buf = torch.zeros(layers, 2, slots, kv_heads, capacity, head_dim, dtype=dtype)
        self.lens = [0] * slots
        self._mode = ""
        self._slot = 0
        self._pos = 0
        self._rows = 0
        self._pos_idx: torch.Tensor | None = None
        self._kv_len = 0

    @property
    def capacity(self) -> int:
        return self.buf.shape[4]

    def bytes_per_token(self) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * self.buf.element_size()

    def ensure_capacity(self, need: int) -> None:
        if need <= self.capacity:
            return
        new_cap = self.capacity
        while new_cap < need:
            new_cap *= 2
        nb = torch.zeros(*self.buf.shape[:4], new_cap, self.head_dim, dtype=self.dtype)
        nb[:, :, :, :, : self.capacity] = self.buf
        self.buf = nb

    # ---- plans set by the engine before each forward ---------------------------------------------
    def plan_prefill(self, slot: int, start: int, length: int) -> None:
        self.ensure_capacity(start + length)
        self._mode, self._slot, self._pos, self._kv_len = "prefill", slot, start, start + length

    def plan_decode(self, rows: int, positions: torch.Tensor) -> None:
        kv_len = int(positions.max()) + 1
        self.ensure_capacity(kv_len)
        self._mode, self._rows, self._pos_idx, self._kv_len = "decode", rows, positions, kv_len

    # ---- the Cache surface the model uses -----------------------------------------------------------
    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kw: Any):
        k_all, v_all = self.buf[layer_idx, 0], self.buf[layer_idx, 1]
        if self._mode == "prefill":
            s, p = self._slot, self._pos
            q = key_states.shape[2]
            k_all[s, :, p : p + q] = key_states[0]
            v_all[s, :, p : p + q] = value_states[0]
            return k_all[s : s + 1, :, : self._kv_len], v_all[s : s + 1, :, : self._kv_len]
        if self._mode == "decode":
            b = self._rows
            rows = torch.arange(b)
            assert self._pos_idx is not None
            k_all[rows, :, self._pos_idx] = key_states[:, :, 0]
            v_all[rows, :, self._pos_idx] = value_states[:, :, 0]
            return k_all[:b, :, : self._kv_len], v_all[:b, :, : self._kv_len]
        raise RuntimeError("SlotKV.update called without a plan")

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._kv_len

    def get_mask_sizes(self, *args: Any, **kw: Any) -> tuple[int, int]:  # not used: the engine passes masks
        return self._kv_len, 0

    # ---- slot management ------------------------------------------------------------------------------
    def move(self, src: int, dst: int) -> None:
        """Copy slot ``src`` to ``dst`` (used to keep decoding slots contiguous)."""
        if src == dst:
            return
        n = self.lens[src]
        self.buf[:, :, dst, :, :n] = self.buf[:, :, src, :, :n]  # [layers, 2, slot, kv_heads, position, head_dim]
        self.lens[dst] = n
        self.lens[src] = 0

    def export(self, slot: int, length: int) -> torch.Tensor:
        """A contiguous copy ``[layers, 2, kv_heads, length, head_dim]`` of a slot's first ``length`` tokens."""
        return self.buf[:, :, slot, :, :length].clone()

    def load(self, slot: int, kv: torch.Tensor, length: int) -> None:
        """Fill a slot's first ``length`` tokens from a cached tensor."""
        self.ensure_capacity(length)
        self.buf[:, :, slot, :, :length] = kv[:, :, :, :length]
        self.lens[slot] = length


@dataclass
class _Entry:
    key: int
    tokens: torch.Tensor  # int64 [L]
    kv: torch.Tensor  # [layers, 2, kv_heads, L, head_dim]
    nbytes: int
    last_used: int


class PrefixCache:
    """Longest-common-prefix index over token ids with LRU eviction under a byte budget.

    Each entry holds the KV of one token sequence. ``lookup(prompt)`` returns the entry with the longest true
    common prefix with the prompt (so a rewritten history, e.g. Qwen3 dropping old reasoning, reuses exactly
    the part that is still identical). Inserting a sequence that extends an entry replaces that entry (an
    agent's growing history is stored once); a sequence already covered by an entry only refreshes it.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = int(budget_bytes)
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count()
        self._clock = itertools.count(1)
        self.bytes_used = 0
        self.evictions = 0
        self.inserts = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _lcp(a: torch.Tensor, b: torch.Tensor) -> int:
        n = min(a.shape[0], b.shape[0])
        if n == 0:
            return 0
        neq = (a[:n] != b[:n]).nonzero()
        return int(neq[0, 0]) if neq.numel() else n

    def lookup(self, prompt: torch.Tensor) -> tuple[torch.Tensor | None, int]:
        """Return ``(kv, matched_tokens)`` of the best entry (``(None, 0)`` on a miss); refreshes its LRU age."""
        best, best_len = None, 0
        for e in self._entries.values():
            n = self._lcp(e.tokens, prompt)
            if n > best_len:
                best, best_len = e, n
        if best is None:
            return None, 0
        best.last_used = next(self._clock)
        return best.kv, best_len

    def insert(self, tokens: torch.Tensor, kv: torch.Tensor) -> bool:
        """Store ``kv`` for ``tokens`` (``kv`` must already be a private copy). Returns whether it was kept."""
        n = tokens.shape[0]
        nbytes = kv.numel() * kv.element_size()
        if n == 0 or nbytes > self.budget_bytes:  # (checked first: entries it would supersede are kept then)
            return False
        for e in list(self._entries.values()):
            lcp = self._lcp(e.tokens, tokens)
            if lcp == n and e.tokens.shape[0] >= n:  # already covered
                e.last_used = next(self._clock)
                return True
            if lcp == e.tokens.shape[0]:  # the new sequence extends this entry: supersede it
                self._remove(e.key)
        while self.bytes_used + nbytes > self.budget_bytes and self._entries:
            victim = min(self._entries.values(), key=lambda e: e.last_used)
            self._remove(victim.key)
            self.evictions += 1
        key = next(self._ids)
        self._entries[key] = _Entry(key, tokens.clone(), kv, nbytes, next(self._clock))
        self.bytes_used += nbytes
        self.inserts += 1
        return True

    def _remove(self, key: int) -> None:
        e = self._entries.pop(key)
        self.bytes_used -= e.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes_used = 0

    def token_counts(self) -> list[int]:
        return [int(e.tokens.shape[0]) for e in self._entries.values()]
