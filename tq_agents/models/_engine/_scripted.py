"""The decode step's layer loop as one module (:class:`DecodeStep`), run by TorchScript's C++ interpreter.

Why: at batch 1 a decode step is ~24 layers x ~25 small tensor ops around the 4 weight matmuls. From Python each
of those ops costs several microseconds of dispatch; measured on the Qwen2.5-0.5B shape, int8, 2 threads, the
Python step took 27.9 ms of which the matmuls were 21.4 ms; the scripted step 22.5 ms, bit-identical logits.
``torch.compile`` was not used: it cannot trace the int8 dynamic-quantized linears (packed-parameter objects) in
one graph and compiles for minutes on 2 cores.

``torch.jit.script`` is deprecated upstream (it still ships and works in the pinned torch 2.13); its deprecation
warning is silenced here and nowhere else. If scripting fails, the engine logs why and runs the same module
eagerly (from Python).

No ``from __future__ import annotations`` in this file: TorchScript reads the annotations.
"""

import threading
import warnings
from typing import Any

import torch
import torch.nn.functional as F


class CatLinear(torch.nn.Module):
    """Several linears on the same input, outputs concatenated (float weights are not fused: no faster)."""

    def __init__(self, mods: list[Any]) -> None:
        super().__init__()
        self.mods = torch.nn.ModuleList(mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs: list[torch.Tensor] = []
        for m in self.mods:
            outs.append(m(x))
        return torch.cat(outs, -1)


class PlainLinear(torch.nn.Module):
    """A linear module (``nn.Linear``, :class:`CatLinear`, torch's dynamic int8 linear) with the decode step's
    ``fused`` entry point done as separate ops; ``Int8Linear`` has the same method as one kernel call."""

    def __init__(self, mod: Any) -> None:
        super().__init__()
        self.mod = mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mod(x)

    @torch.jit.export
    def fused(
        self,
        x: torch.Tensor,
        norm_w: torch.Tensor | None,
        eps: float,
        residual: torch.Tensor | None,
        glu: bool = False,
    ) -> torch.Tensor:
        """``[residual +] self(_rms(x, norm_w, eps) if norm_w is given else x)``; with ``glu`` the input is
        ``silu(gate) * up`` of ``x = [gate, up]``."""
        if glu:
            inter = x.shape[-1] // 2
            x = F.silu(x[:, :inter]) * x[:, inter:]
        if norm_w is not None:
            x = _rms(x, norm_w, eps)
        y = self.mod(x)
        if residual is not None:
            y = residual + y
        return y


def _with_fused(mod: Any) -> Any:
    from tq_agents.models._engine._int8 import Int8Linear

    return mod if isinstance(mod, Int8Linear) else PlainLinear(mod)


class _ScriptLayer(torch.nn.Module):
    def __init__(self, ly: Any) -> None:
        super().__init__()
        self.qkv = _with_fused(ly.qkv)
        self.gate_up = _with_fused(ly.gate_up)
        self.o = _with_fused(ly.o)
        self.down = _with_fused(ly.down)
        self.ln1 = torch.nn.Parameter(ly.ln1.detach(), requires_grad=False)
        self.ln2 = torch.nn.Parameter(ly.ln2.detach(), requires_grad=False)
        self.eps1 = float(ly.eps1)
        self.eps2 = float(ly.eps2)
        self.has_q_norm = ly.q_norm is not None
        self.has_k_norm = ly.k_norm is not None
        empty = torch.empty(0, dtype=ly.ln1.dtype)
        self.q_norm = torch.nn.Parameter(ly.q_norm[0].detach() if ly.q_norm else empty, requires_grad=False)
        self.k_norm = torch.nn.Parameter(ly.k_norm[0].detach() if ly.k_norm else empty, requires_grad=False)
        self.q_eps = float(ly.q_norm[1]) if ly.q_norm else 0.0
        self.k_eps = float(ly.k_norm[1]) if ly.k_norm else 0.0


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """HF Qwen2RMSNorm: fp32 statistics, weight applied in the input dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return w * xf.to(x.dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, h: int) -> torch.Tensor:
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin


class _Attention(torch.nn.Module):
    """Decode attention: ``forward(q [B, nh, hd], k/v slot views [B, nkv, L, hd], mask, lengths)``. ``mask`` and
    ``lengths`` (``positions + 1``, computed once per step) are both ``None`` when every row attends to all L
    positions; an implementation uses whichever of the two it needs."""

    def __init__(self, scaling: float) -> None:
        super().__init__()
        self.scaling = scaling


class SdpaAttention(_Attention):
    """Decode attention through torch's ``scaled_dot_product_attention`` (GQA, optional mask)."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        return F.scaled_dot_product_attention(q.unsqueeze(2), k, v, attn_mask=mask, scale=self.scaling, enable_gqa=True)


class TqAttention(_Attention):
    """Decode attention through tq's kernel (``torch.ops.tq.decode_attn``: fp32, one query per row, row ``b``
    attending to positions ``0..lengths[b] - 1``). Measured against ``SdpaAttention`` on the Qwen2.5-0.5B head
    shape (14 query / 2 KV heads of 64): 16.3 vs 7.7 us at 40 positions, 146 vs 82 us at 1,400, batch 4 x 1,400
    549 vs 305 us; outputs within 3e-7. Used when the engine's int8 kernel is loaded (int8 mode)."""

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        return torch.ops.tq.decode_attn(q, k, v, self.scaling, lengths)


def _attention(fd: Any) -> torch.nn.Module:
    from tq_agents.models._engine._int8 import Int8Linear

    hd = int(fd.head_dim)
    int8 = isinstance(fd.lm_head, Int8Linear)  # tq's kernel library is loaded, activations are fp32
    if int8 and hd % 16 == 0 and hd <= 256:
        return TqAttention(float(fd.scaling))
    return SdpaAttention(float(fd.scaling))


class DecodeStep(torch.nn.Module):
    """``forward(x [B, H] embeddings, cos/sin [B, 1, D], kv buffer, positions [B], p0, kv_len, mask) -> logits``
    over a ``FastDecoder``'s weights (shared); scriptable, and runs eagerly as well."""

    def __init__(self, fd: Any) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([_ScriptLayer(ly) for ly in fd.layers])
        self.lm_head = _with_fused(fd.lm_head)
        self.norm_w = torch.nn.Parameter(fd.norm_w.detach(), requires_grad=False)
        self.norm_eps = float(fd.norm_eps)
        self.nh = int(fd.heads)
        self.nkv = int(fd.kv_heads)
        self.hd = int(fd.head_dim)
        self.attn = _attention(fd)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        buf: torch.Tensor,
        positions: torch.Tensor,
        p0: int,
        kv_len: int,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b = x.shape[0]
        nh, nkv, hd = self.nh, self.nkv, self.hd
        nq = nh + nkv
        h = hd // 2
        rows = torch.arange(b)
        lengths: torch.Tensor | None = None
        if mask is not None:
            lengths = positions + 1  # what the mask allows each row: once per step, not per layer
        i = 0
        for ly in self.layers:
            qkv = ly.qkv.fused(x, ly.ln1, ly.eps1, None)
            qk = qkv[:, : nq * hd].reshape(b, nq, hd)
            v = qkv[:, nq * hd :].reshape(b, nkv, hd)
            if not ly.has_q_norm and not ly.has_k_norm:
                qk = _rope(qk, cos, sin, h)
                q = qk[:, :nh]
                k = qk[:, nh:]
            else:
                q = qk[:, :nh]
                k = qk[:, nh:]
                if ly.has_q_norm:
                    q = _rms(q, ly.q_norm, ly.q_eps)
                if ly.has_k_norm:
                    k = _rms(k, ly.k_norm, ly.k_eps)
                q = _rope(q, cos, sin, h)
                k = _rope(k, cos, sin, h)
            kl = buf[i, 0]
            vl = buf[i, 1]
            if b == 1:
                kl[0, :, p0] = k[0]
                vl[0, :, p0] = v[0]
            else:
                kl[rows, :, positions] = k
                vl[rows, :, positions] = v
            att = self.attn(q, kl[:b, :, :kv_len], vl[:b, :, :kv_len], mask, lengths)
            x = ly.o.fused(att.reshape(b, nh * hd), None, 0.0, x)
            gu = ly.gate_up.fused(x, ly.ln2, ly.eps2, None)
            x = ly.down.fused(gu, None, 0.0, x, True)
            i += 1
        return self.lm_head.fused(x, self.norm_w, self.norm_eps, None).float()


_SCRIPT_LOCK = threading.Lock()  # the TorchScript compiler keeps global state: one compilation at a time


def script_step(step: DecodeStep) -> torch.jit.ScriptModule:
    """Script ``step`` (its weights are shared, not copied). Raises whatever scripting raises."""
    with _SCRIPT_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        return torch.jit.script(step.eval())
