"""The engine's own compiled kernels (``_vnni.cpp``), built on first use and cached: ``torch.ops.tq.linear_i8``
(the int8 linear), ``tq.linear_i8_ex`` (with RMSNorm / SwiGLU in front and a residual add after, for the decode
step) and ``tq.decode_attn`` (one-query-per-row GQA attention over the KV slots).

Why a kernel of our own: torch's int8 linear (fbgemm, dynamic quantization) reached 18-29 GB/s on the decode
step's matrix-vector products here and costs ~20 us per call, so the int8 batch-1 decode of the Qwen2.5-0.5B shape
sat at 57-86% of the machine's read bandwidth depending on the run. ``_vnni.cpp`` packs the int8 weights so that
one 64-byte load feeds one AVX-512 VNNI instruction for 16 outputs (one sequential stream per thread, no
horizontal sums); measured on the same shapes it reads 35-40 GB/s at batch 1, calls cost ~5 us, and it is also
faster than fbgemm for prefill-sized inputs (M = 256), with half fbgemm's per-matmul error (activations quantized
per row, full 8-bit range). See ``benchmarks/engine.py``.

Build: ``g++`` (``$CXX``) against the installed torch's headers, linked to the libgomp torch loaded (so its threads
are torch's own OpenMP pool), about 10 s once; the library is cached under ``$TQ_KERNEL_CACHE`` (default:
``kernels/`` in the user cache directory, ``$TQ_CACHE_DIR`` or ``~/.cache/tq_agents``) keyed by the source, torch
version and flags. Requirements: Linux x86-64 with AVX-512 F/BW/VL + VNNI and a C++ compiler. When one is missing
(or ``TQ_INT8_KERNEL=fbgemm`` is set), int8 mode uses torch's fbgemm linear and a warning says why: never silently.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["int8_kernel_status", "load_int8_kernel"]

log = logging.getLogger("tq_agents.engine")

_SOURCE = Path(__file__).with_name("_vnni.cpp")
_CPU_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_vnni")
_ARCH_FLAGS = ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma"]
_lock = threading.Lock()
_state: tuple[bool, str] | None = None  # (loaded, reason if not)


def _cpu_missing() -> list[str]:
    if not sys.platform.startswith("linux"):
        return [f"a Linux x86-64 CPU (this is {sys.platform})"]
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError as e:
        return [f"/proc/cpuinfo ({e})"]
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [f for f in _CPU_FLAGS if f not in flags]


def cache_dir() -> Path:
    """``$TQ_KERNEL_CACHE``, else ``kernels/`` in the tq-agents user cache directory (shared with the tokenizer)."""
    env = os.environ.get("TQ_KERNEL_CACHE")
    if env:
        return Path(env).expanduser()
    from tq_agents.models.qwen._tokenizer import cache_dir as user_cache_dir

    return user_cache_dir() / "kernels"


def _build(cxx: str) -> Path:
    """Compile ``_vnni.cpp`` into the cache (once per source/torch/flags; concurrent builders share one result)."""
    import fcntl

    import torch

    tdir = Path(torch.__file__).parent
    flags = [
        "-O3",
        "-std=c++20",
        "-fPIC",
        "-shared",
        *_ARCH_FLAGS,
        "-fopenmp",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
    ]
    src = _SOURCE.read_bytes()
    key = hashlib.sha256(src + torch.__version__.encode() + " ".join([cxx, *flags]).encode()).hexdigest()[:16]
    out_dir = cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / f"tq_linear_i8-{key}.so"
    if lib.exists():
        return lib
    with open(out_dir / f"{lib.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if lib.exists():
            return lib
        t0 = time.perf_counter()
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [
            cxx,
            *flags,
            f"-I{tdir / 'include'}",
            str(_SOURCE),
            "-o",
            tmp,
            f"-L{tdir / 'lib'}",
            f"-Wl,-rpath,{tdir / 'lib'}",
            "-ltorch_cpu",
            "-lc10",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
                raise RuntimeError(f"{cxx} exited with {proc.returncode}:\n{tail}")
            os.replace(tmp, lib)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        log.info("built the int8 kernel %s in %.1f s", lib, time.perf_counter() - t0)
    return lib


def load_int8_kernel() -> bool:
    """Make ``torch.ops.tq.linear_i8`` available (building it on first use); False, with a logged warning saying
    why, when this machine cannot have it. The answer is computed once per process."""
    global _state
    with _lock:
        if _state is None:
            _state = _load()
            if not _state[0]:
                log.warning("int8 linears use torch's fbgemm kernel, not tq's: %s", _state[1])
        return _state[0]


def int8_kernel_status() -> str:
    """``"tq"`` if the tq kernel is loaded, else why not (after ``load_int8_kernel``)."""
    load_int8_kernel()
    assert _state is not None
    return "tq" if _state[0] else _state[1]


def _load() -> tuple[bool, str]:
    choice = os.environ.get("TQ_INT8_KERNEL", "auto").strip().lower()
    if choice == "fbgemm":
        return False, "TQ_INT8_KERNEL=fbgemm is set"
    if choice not in ("", "auto", "tq"):
        return False, f"TQ_INT8_KERNEL={choice!r} is not one of auto, tq, fbgemm"
    missing = _cpu_missing()
    if missing:
        return False, f"the CPU lacks {', '.join(missing)}"
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return False, f"no C++ compiler {cxx!r} on PATH to build it (install g++, or set CXX)"
    import torch

    try:
        lib = _build(cxx)
        torch.ops.load_library(str(lib))
        torch.ops.tq.linear_i8  # noqa: B018 - raises if the library did not register the op
    except Exception as e:
        return False, f"building or loading it failed: {type(e).__name__}: {e}"
    return True, ""
