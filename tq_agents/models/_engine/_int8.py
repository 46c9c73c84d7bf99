"""``Int8Linear``: an ``nn.Linear`` with int8 weights run by ``torch.ops.tq.linear_i8`` (see ``_kernels.py``).

Weights: symmetric int8 with one fp32 scale per output row (``round(w / scale)``, ``scale = max|w_row| / 127``),
stored packed for the kernel as ``[N/16, K/4, 64]`` (rows padded to a multiple of 16, columns to 4, with zeros).
Activations are quantized per row per call (uint8 with a zero point). Works for any leading shape ``[..., K]``,
returns fp32. Scriptable (TorchScript), so the engine's scripted decode step calls the kernel from C++.

No ``from __future__ import annotations`` in this file: TorchScript reads the annotations.
"""

import itertools
import mmap

import torch

__all__ = ["Int8Linear", "cat_int8", "place_in_arena"]

_ALIGN = 2 << 20


def _pack(q: torch.Tensor) -> torch.Tensor:
    """int8 ``[N, K]`` -> ``[NP/16, K4, 64]`` (16 outputs x 4 consecutive k per 64 bytes)."""
    n, k = q.shape
    np_, k4 = (n + 15) // 16 * 16, (k + 3) // 4
    if np_ != n or k4 * 4 != k:
        padded = torch.zeros(np_, k4 * 4, dtype=torch.int8)
        padded[:n, :k] = q
        q = padded
    return q.reshape(np_ // 16, 16, k4, 4).permute(0, 2, 1, 3).contiguous().reshape(np_ // 16, k4, 64)


class Int8Linear(torch.nn.Module):
    """``y = x @ (q * scale).T + bias`` with int8 ``q``; see the module docstring."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        n, k = q.shape
        np_ = (n + 15) // 16 * 16
        self.in_features = int(k)
        self.out_features = int(n)
        self.register_buffer("wp", _pack(q.to(torch.int8)))
        sw = torch.zeros(np_, dtype=torch.float32)
        sw[:n] = scale.float()
        self.register_buffer("sw", sw)
        rs = torch.zeros(np_, dtype=torch.int32)
        rs[:n] = q.sum(1, dtype=torch.int32)
        self.register_buffer("rs", rs)
        self.has_bias = bias is not None
        b = torch.zeros(np_ if bias is not None else 0, dtype=torch.float32)
        if bias is not None:
            b[:n] = bias.detach().float()
        self.register_buffer("bias", b)

    @staticmethod
    def from_float(lin: torch.nn.Module) -> "Int8Linear":
        """Quantize an ``nn.Linear``'s weight per output row (the linear itself is left as it is)."""
        w = lin.weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        return Int8Linear(q, scale, lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias: torch.Tensor | None = self.bias if self.has_bias else None
        if x.dim() == 2:
            return torch.ops.tq.linear_i8(x, self.wp, self.sw, self.rs, bias, self.out_features)
        shape: list[int] = [int(s) for s in x.shape[:-1]]
        shape.append(self.out_features)
        y = torch.ops.tq.linear_i8(x.reshape(-1, self.in_features), self.wp, self.sw, self.rs, bias, self.out_features)
        return y.reshape(shape)

    @torch.jit.export
    def fused(
        self,
        x: torch.Tensor,
        norm_w: torch.Tensor | None,
        eps: float,
        residual: torch.Tensor | None,
        glu: bool = False,
    ) -> torch.Tensor:
        """``[residual +] self(rms_norm(x, norm_w, eps) if norm_w is given else x)`` for 2-D ``x``, in one kernel
        call (the decode step's entry point; the norm runs in fp32 as in Qwen's RMSNorm). With ``glu``, ``x`` is
        ``[gate, up]`` and the input is ``silu(gate) * up``."""
        bias: torch.Tensor | None = self.bias if self.has_bias else None
        return torch.ops.tq.linear_i8_ex(
            x, self.wp, self.sw, self.rs, bias, self.out_features, norm_w, eps, residual, glu
        )

    @torch.jit.ignore
    def int8_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q [N, K] int8, scale [N] fp32)``, unpacked (a copy)."""
        nb, k4, _ = self.wp.shape
        q = self.wp.reshape(nb, k4, 16, 4).permute(0, 2, 1, 3).reshape(nb * 16, k4 * 4)
        return q[: self.out_features, : self.in_features].contiguous(), self.sw[: self.out_features].clone()

    @torch.jit.ignore
    def nbytes(self) -> int:
        """Bytes one forward reads: the packed weights, scales, row sums and bias."""
        return sum(t.numel() * t.element_size() for t in (self.wp, self.sw, self.rs, self.bias))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}"


def place_in_arena(mods: list[Int8Linear]) -> None:
    """Move the packed weights of ``mods`` into one fresh anonymous mapping, back to back in the given order.

    Why: the matrix-vector products of a decode step stream every weight once, and how fast depends on where the
    pages are. Weights allocated one by one come from the C heap's recycled (physically scattered) memory;
    fresh pages of one mapping are laid out sequentially. Measured on the 97 Qwen2.5-0.5B-shape int8 matrices,
    2 threads, in one process whose heap had been churned by building them: 32-33 GB/s heap-allocated, 40-43
    GB/s in one mapping (2 MB aligned), read probe 51-62 GB/s; in the machine's slower state 25-27 vs 29-30
    GB/s (probe 33-35). Weights cloned into a fresh heap were as fast as the mapping. Consecutive parts
    (q/k/v, gate/up) stay adjacent, so :func:`cat_int8` fuses them as views: the weights are held once.
    """
    sizes = [m.wp.numel() for m in mods]
    total = sum(sizes)
    if total == 0:
        return
    region = mmap.mmap(-1, total + _ALIGN)
    raw = torch.frombuffer(region, dtype=torch.int8)  # keeps ``region`` alive as long as any view of it
    start = (-raw.data_ptr()) % _ALIGN
    off = start
    for m, n in zip(mods, sizes, strict=True):
        view = raw[off : off + n].view(m.wp.shape)
        view.copy_(m.wp)
        m.wp = view
        off += n


def _adjacent(ts: list[torch.Tensor]) -> bool:
    for a, b in itertools.pairwise(ts):
        if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
            return False
        if a.data_ptr() + a.numel() * a.element_size() != b.data_ptr():
            return False
    return all(t.is_contiguous() for t in ts)


def cat_int8(mods: list[Int8Linear]) -> Int8Linear:
    """One ``Int8Linear`` computing ``cat([m(x) for m in mods], -1)``. When every part has a multiple of 16 rows,
    the parts' buffers are re-pointed at slices of the fused one, so the weights are held once."""
    if not all(m.in_features == mods[0].in_features for m in mods):
        raise ValueError("cat_int8: the linears take inputs of different sizes")
    if not all(m.out_features % 16 == 0 for m in mods):
        parts = [m.int8_weight() for m in mods]
        biases = [m.bias[: m.out_features] if m.has_bias else torch.zeros(m.out_features) for m in mods]
        has_bias = any(m.has_bias for m in mods)
        return Int8Linear(
            torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), torch.cat(biases) if has_bias else None
        )
    fused = Int8Linear.__new__(Int8Linear)
    torch.nn.Module.__init__(fused)
    fused.in_features = mods[0].in_features
    fused.out_features = sum(m.out_features for m in mods)
    wps = [m.wp for m in mods]
    if _adjacent(wps):  # back to back in one arena (place_in_arena): the fused weight is a view over them all
        first = wps[0]
        rows = sum(int(w.shape[0]) for w in wps)
        fused_wp = first.as_strided((rows, first.shape[1], first.shape[2]), first.stride())
    else:
        fused_wp = torch.cat(wps)
    fused.register_buffer("wp", fused_wp)
    fused.register_buffer("sw", torch.cat([m.sw for m in mods]))
    fused.register_buffer("rs", torch.cat([m.rs for m in mods]))
    fused.has_bias = any(m.has_bias for m in mods)
    if fused.has_bias:
        fused.register_buffer("bias", torch.cat([m.bias if m.has_bias else torch.zeros(m.out_features) for m in mods]))
    else:
        fused.register_buffer("bias", torch.zeros(0))
    off = 0
    for m in mods:  # share: each part now views its rows of the fused buffers
        nb, n = m.out_features // 16, m.out_features
        m.wp = fused.wp[off // 16 : off // 16 + nb]
        m.sw = fused.sw[off : off + n]
        m.rs = fused.rs[off : off + n]
        if m.has_bias:
            m.bias = fused.bias[off : off + n]
        off += n
    return fused
