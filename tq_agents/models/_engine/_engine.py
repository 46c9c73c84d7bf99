"""The continuous-batching engine: one background thread, a priority queue, chunked prefill, batched decode.

Each loop iteration:

1. admit: if a batch slot is free and nothing is being prefilled, pop the highest-priority request (FIFO
   among equals), look up the prefix cache and copy the longest cached prefix into its slot;
2. prefill one chunk (``prefill_chunk`` tokens) of the admitted request -- so a long prompt is spread over
   several iterations and never stalls the running decodes for more than one chunk;
3. decode one token for every running sequence in ONE batched forward (rows have different lengths: each
   row gets its own position id and an attention mask over its own KV);
4. retire finished / cancelled sequences (their KV goes into the prefix cache) so new ones can join.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from tq_agents.errors import ModelRequestError
from tq_agents.models._engine._fastdecode import FastDecoder
from tq_agents.models._engine._fastdecode import supports as supports_fast_decode
from tq_agents.models._engine._kv import PrefixCache, SlotKV
from tq_agents.models._engine._loader import in_fresh_thread
from tq_agents.models._engine._sampling import make_generator, sample_row
from tq_agents.models._engine._types import GenerationHandle, GenerationResult, SamplingParams, TokenConstraint

__all__ = ["Engine"]

log = logging.getLogger("tq_agents.engine")

DEFAULT_CACHE_BUDGET = 1 << 30  # 1 GiB of prefix KV


@dataclass(eq=False)
class _Request:
    rid: int
    prompt: torch.Tensor  # int64 [P]
    params: SamplingParams
    constraint: TokenConstraint | None
    priority: int
    handle: GenerationHandle
    gen: torch.Generator
    generated: list[int] = field(default_factory=list)
    slot: int = -1
    kv_len: int = 0  # tokens whose KV is in the slot
    cached: int = 0
    submitted_at: float = 0.0


class Engine:
    """Serves generation requests for one causal LM from one background thread (see module doc).

    ``submit`` may be called from any thread or event loop; tokens are delivered through the returned
    :class:`GenerationHandle`. ``max_batch_size`` bounds concurrently decoding sequences; ``prefill_chunk``
    bounds the tokens prefilled per loop iteration; ``cache_budget_bytes`` bounds the prefix cache.
    ``fast_decode`` runs decode steps through the lean Qwen2/Qwen3 forward of ``_fastdecode`` (same weights and
    tokens, less per-step overhead); ``False`` uses the transformers forward for every step.
    ``idle_exit_s``: the loop thread exits after this long without work and the next ``submit`` starts a new one,
    so an idle engine holds no OpenMP thread pool (pools beyond the CPU count slow every engine's parallel ops:
    see ``in_fresh_thread``); processes with several engines lose nothing while one of them is idle.
    """

    def __init__(
        self,
        model: Any,
        *,
        max_batch_size: int = 8,
        prefill_chunk: int = 256,
        cache_budget_bytes: int = DEFAULT_CACHE_BUDGET,
        prefix_cache: bool = True,
        fast_decode: bool = True,
        name: str = "engine",
        idle_exit_s: float = 2.0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
        if not idle_exit_s > 0:
            raise ValueError(f"idle_exit_s must be > 0 seconds, got {idle_exit_s}")
        cfg = model.config
        if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
            log.warning("sliding-window attention is ignored by the engine (full attention is used)")
        self.model = model.eval()
        self.max_batch_size = max_batch_size
        self.name = name
        self.idle_exit_s = idle_exit_s
        self.prefill_chunk = prefill_chunk
        self.vocab_size = int(cfg.vocab_size)
        self.max_positions = int(getattr(cfg, "max_position_embeddings", 1 << 30))
        layers = int(cfg.num_hidden_layers)
        kv_heads = int(getattr(cfg, "num_key_value_heads", cfg.num_attention_heads))
        head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
        dtype = _activation_dtype(model)
        # torch set-up work (zeroed KV buffers, fused/scripted decode step) in a throwaway thread: see in_fresh_thread
        self.kv = in_fresh_thread(
            lambda: SlotKV(layers=layers, slots=max_batch_size + 1, kv_heads=kv_heads, head_dim=head_dim, dtype=dtype)
        )
        self.cache = PrefixCache(cache_budget_bytes) if prefix_cache else None
        self._mask_keys = sorted(set(getattr(cfg, "layer_types", None) or ["full_attention"]))
        # decode steps bypass the HF module stack where the architecture allows (see _fastdecode)
        fast = fast_decode and supports_fast_decode(model)
        self._fast = in_fresh_thread(lambda: FastDecoder(model)) if fast else None

        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._queue: list[tuple[int, int, _Request]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._running: list[_Request] = []  # decoding; _running[i].slot == i
        self._prefilling: _Request | None = None
        self._closed = False
        self._stats: dict[str, Any] = {
            "requests": 0,
            "finished": 0,
            "cancelled": 0,
            "errors": 0,
            "prompt_tokens": 0,
            "cached_prompt_tokens": 0,
            "prefill_tokens": 0,
            "prefill_chunks": 0,
            "decode_steps": 0,
            "decode_tokens": 0,
            "max_batch": 0,
            "prefill_seconds": 0.0,
            "decode_seconds": 0.0,
            "loop_starts": 0,
        }
        self.admission_log: deque[int] = deque(maxlen=1024)  # request ids in admission order
        self._thread: threading.Thread | None = None
        self._start_loop()

    # ------------------------------------------------------------------ public API
    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams | None = None,
        *,
        constraint: TokenConstraint | None = None,
        priority: int = 0,
    ) -> GenerationHandle:
        """Queue one request; higher ``priority`` is admitted first (FIFO among equals). Returns its handle at once.

        ``params.max_new_tokens == 0`` only prefills the prompt (warming the prefix cache, e.g. for a shared system
        prompt). Raises ``ModelRequestError`` for an empty prompt, ids outside the vocabulary, a prompt longer
        than the model's context, or bad sampling params.
        """
        params = params or SamplingParams()
        params.validate()
        if self._closed:
            raise ModelRequestError("engine is closed; create a new one (get_engine) to submit more requests")
        ids = list(prompt_ids)
        if not ids:
            raise ModelRequestError("prompt_ids is empty: the engine needs at least one prompt token")
        bad = [t for t in ids if not isinstance(t, int) or not 0 <= t < self.vocab_size]
        if bad:
            raise ModelRequestError(
                f"prompt_ids holds {len(bad)} id(s) outside [0, {self.vocab_size}) e.g. {bad[:3]}: "
                "tokenize with this model's tokenizer"
            )
        if len(ids) >= self.max_positions:
            raise ModelRequestError(
                f"prompt of {len(ids)} tokens does not fit the model's context of {self.max_positions} tokens"
            )
        rid = next(self._ids)
        handle = GenerationHandle(request_id=rid, prompt_tokens=len(ids))
        handle._cancel_cb = self._on_cancel
        req = _Request(
            rid=rid,
            prompt=torch.tensor(ids, dtype=torch.long),
            params=params,
            constraint=constraint,
            priority=int(priority),
            handle=handle,
            gen=make_generator(params.seed),
            submitted_at=time.perf_counter(),
        )
        with self._lock:
            if self._closed:  # closed while this request was being built: the loop may have drained the queue
                raise ModelRequestError("engine is closed; create a new one (get_engine) to submit more requests")
            heapq.heappush(self._queue, (-req.priority, next(self._seq), req))
            self._stats["requests"] += 1
            self._stats["prompt_tokens"] += len(ids)
            if self._thread is None:  # the loop thread left after idling: start a new one
                self._start_loop()
        self._wake.set()
        return handle

    def _start_loop(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"tq-{self.name}", daemon=True)
        self._thread.start()
        self._stats["loop_starts"] += 1

    def stats(self) -> dict[str, Any]:
        """Counters: prefix-cache hit tokens and rate, batch sizes, prefill/decode work and time."""
        with self._lock:
            s = dict(self._stats)
            s["queued"] = len(self._queue)
        s["running"] = len(self._running)
        s["prefix_hit_rate"] = s["cached_prompt_tokens"] / s["prompt_tokens"] if s["prompt_tokens"] else 0.0
        s["avg_batch"] = s["decode_tokens"] / s["decode_steps"] if s["decode_steps"] else 0.0
        if self.cache is not None:
            s["cache_entries"] = len(self.cache)
            s["cache_bytes"] = self.cache.bytes_used
            s["cache_budget_bytes"] = self.cache.budget_bytes
            s["cache_evictions"] = self.cache.evictions
        return s

    def close(self) -> None:
        """Stop the loop; pending and running requests finish with ``"cancelled"``."""
        with self._lock:  # submit() checks and queues under the same lock: nothing is queued after this
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=30)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ cancellation
    def _on_cancel(self, handle: GenerationHandle) -> None:
        with self._lock:
            for i, (_, _, req) in enumerate(self._queue):
                if req.handle is handle:
                    self._queue.pop(i)
                    heapq.heapify(self._queue)
                    self._stats["cancelled"] += 1
                    self._stats["finished"] += 1
                    handle._finish(GenerationResult([], "cancelled", int(req.prompt.shape[0]), 0))
                    return
        self._wake.set()  # running: the loop retires it at the next step

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> None:
        torch.set_grad_enabled(False)
        idle_since: float | None = None
        with torch.inference_mode():
            while not self._closed:
                self._admit()
                if self._prefilling is None and not self._running:
                    now = time.monotonic()
                    if idle_since is None:
                        idle_since = now
                    elif now - idle_since >= self.idle_exit_s:
                        with self._lock:  # submit() starts a new loop thread under the same lock
                            if not self._queue and not self._closed:
                                self._thread = None
                                return
                    self._wake.wait(timeout=min(0.5, self.idle_exit_s))
                    self._wake.clear()
                    continue
                idle_since = None
                try:
                    self._reap_cancelled()
                    if self._prefilling is not None:
                        self._prefill_step()
                    if self._running:
                        self._decode_step()
                except Exception as exc:  # a failed forward fails the requests in flight, not the engine
                    log.exception("engine step failed")
                    self._fail_all(exc)
            self._shutdown()

    def _admit(self) -> None:
        if self._prefilling is not None or len(self._running) >= self.max_batch_size:
            return
        with self._lock:
            if not self._queue:
                return
            _, _, req = heapq.heappop(self._queue)
        self.admission_log.append(req.rid)
        req.slot = len(self._running)
        req.kv_len = 0
        self.kv.lens[req.slot] = 0
        if self.cache is not None:
            kv, n = self.cache.lookup(req.prompt)
            n = min(n, int(req.prompt.shape[0]) - 1)  # the last prompt token is always run: we need its logits
            if kv is not None and n > 0:
                self.kv.load(req.slot, kv, n)
                req.kv_len = req.cached = n
                with self._lock:
                    self._stats["cached_prompt_tokens"] += n
        self._prefilling = req

    def _forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask={k: mask for k in self._mask_keys},
            past_key_values=self.kv,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    def _prefill_step(self) -> None:
        req = self._prefilling
        assert req is not None
        if req.handle.cancelled:
            self._prefilling = None
            self._finish(req, "cancelled", insert=False)
            return
        t0 = time.perf_counter()
        p = req.kv_len
        total = int(req.prompt.shape[0])
        q = min(self.prefill_chunk, total - p)
        chunk = req.prompt[p : p + q]
        self.kv.plan_prefill(req.slot, p, q)
        rows = torch.arange(p, p + q)
        mask = (torch.arange(p + q)[None, :] <= rows[:, None]).view(1, 1, q, p + q)
        logits = self._forward(chunk.view(1, q), rows.view(1, q), mask)
        req.kv_len = p + q
        self.kv.lens[req.slot] = req.kv_len
        with self._lock:
            self._stats["prefill_tokens"] += q
            self._stats["prefill_chunks"] += 1
            self._stats["prefill_seconds"] += time.perf_counter() - t0
        if req.kv_len < total:
            return
        # prompt done: keep its KV for later requests, then sample the first token
        self._prefilling = None
        if self.cache is not None and total > req.cached:
            self.cache.insert(req.prompt, self.kv.export(req.slot, total))
        if req.params.max_new_tokens == 0:
            self._finish(req, "length", insert=False)
            return
        dst = len(self._running)
        if req.slot != dst:
            self.kv.move(req.slot, dst)
            req.slot = dst
        self._running.append(req)
        self._emit(req, logits[0])

    def _decode_step(self) -> None:
        t0 = time.perf_counter()
        reqs = list(self._running)
        b = len(reqs)
        input_ids = torch.tensor([[r.generated[-1]] for r in reqs], dtype=torch.long)
        pos = torch.tensor([r.kv_len for r in reqs], dtype=torch.long)
        self.kv.plan_decode(b, pos)
        if self._fast is not None:
            logits = self._fast.decode(input_ids.view(b), pos, self.kv)
        else:
            kv_len = int(pos.max()) + 1
            mask = (torch.arange(kv_len)[None, :] <= pos[:, None]).view(b, 1, 1, kv_len)
            logits = self._forward(input_ids, pos.view(b, 1), mask)
        for r in reqs:
            r.kv_len += 1
            self.kv.lens[r.slot] = r.kv_len
        greedy_rows = [i for i, r in enumerate(reqs) if r.params.greedy and r.constraint is None]
        fast: dict[int, int] = {}
        if greedy_rows:
            am = torch.argmax(logits[greedy_rows], dim=-1).tolist()
            fast = dict(zip(greedy_rows, am, strict=True))
        with self._lock:
            self._stats["decode_steps"] += 1
            self._stats["decode_tokens"] += b
            self._stats["max_batch"] = max(self._stats["max_batch"], b)
            self._stats["decode_seconds"] += time.perf_counter() - t0
        for i, r in enumerate(reqs):
            self._emit(r, logits[i], fast.get(i))

    def _emit(self, req: _Request, row: torch.Tensor, token: int | None = None) -> None:
        """Choose (unless given), record and stream one token, then retire the request if it is done."""
        if req.handle.cancelled:
            self._finish(req, "cancelled")
            return
        try:
            if token is None:
                if req.constraint is not None:
                    row = row.contiguous().clone()
                    req.constraint.apply(row)
                token = sample_row(row, req.params, req.gen)
                if token < 0:
                    raise ModelRequestError("the token constraint disallowed every token (grammar dead end)")
            req.generated.append(token)
            req.handle._push(token)
            if req.constraint is not None:
                req.constraint.advance(token)
        except Exception as exc:
            log.warning("request %d failed: %s", req.rid, exc)
            self._finish(req, "error", error=f"{type(exc).__name__}: {exc}")
            return
        p = req.params
        try:
            done = token in p.stop_token_ids or (req.constraint is not None and req.constraint.is_finished())
        except Exception as exc:  # a broken constraint ends its own request, as in apply/advance above
            log.warning("request %d failed: %s", req.rid, exc)
            self._finish(req, "error", error=f"{type(exc).__name__}: {exc}")
            return
        if done:
            self._finish(req, "stop")
        elif len(req.generated) >= p.max_new_tokens or req.kv_len + 1 >= self.max_positions:
            self._finish(req, "length")

    def _finish(self, req: _Request, reason: str, *, insert: bool = True, error: str | None = None) -> None:
        if req in self._running:
            if insert and self.cache is not None and reason != "error":
                toks = torch.cat([req.prompt, torch.tensor(req.generated[:-1], dtype=torch.long)])
                n = min(req.kv_len, int(toks.shape[0]))
                self.cache.insert(toks[:n], self.kv.export(req.slot, n))
            i = self._running.index(req)
            last = len(self._running) - 1
            if i != last:  # keep decoding slots contiguous: move the last one into the hole
                moved = self._running[last]
                self.kv.move(moved.slot, i)
                moved.slot = i
                self._running[i] = moved
            else:
                self.kv.lens[i] = 0
            self._running.pop()
        elif req.slot >= len(self._running):  # the prefill slot
            self.kv.lens[req.slot] = 0
        with self._lock:
            self._stats["finished"] += 1
            if reason == "cancelled":
                self._stats["cancelled"] += 1
            elif reason == "error":
                self._stats["errors"] += 1
        req.handle._finish(
            GenerationResult(list(req.generated), reason, int(req.prompt.shape[0]), req.cached, error=error)
        )

    def _reap_cancelled(self) -> None:
        for r in [r for r in self._running if r.handle.cancelled]:
            self._finish(r, "cancelled")

    def _fail_all(self, exc: Exception) -> None:
        msg = f"{type(exc).__name__}: {exc}"
        if self._prefilling is not None:
            req, self._prefilling = self._prefilling, None
            self._finish(req, "error", error=msg)
        for r in list(self._running):
            self._finish(r, "error", error=msg)

    def _shutdown(self) -> None:
        with self._lock:
            pending = [r for _, _, r in self._queue]
            self._queue.clear()
            self._stats["cancelled"] += len(pending)
            self._stats["finished"] += len(pending)
        for r in pending:
            r.handle._finish(GenerationResult([], "cancelled", int(r.prompt.shape[0]), 0))
        if self._prefilling is not None:
            req, self._prefilling = self._prefilling, None
            self._finish(req, "cancelled", insert=False)
        for r in list(self._running):
            self._finish(r, "cancelled", insert=False)


def _activation_dtype(model: Any) -> torch.dtype:
    for p in model.parameters():
        if p.dtype in (torch.float32, torch.bfloat16, torch.float16):
            return p.dtype
    return torch.float32
