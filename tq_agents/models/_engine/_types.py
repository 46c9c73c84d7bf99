"""Request/response types of the local engine: sampling params, constraint protocol, handles, results."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tq_agents.errors import ModelRequestError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["FINISH_REASONS", "GenerationHandle", "GenerationResult", "SamplingParams", "TokenConstraint"]

FINISH_REASONS = ("stop", "length", "cancelled", "error")


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded.

    ``temperature == 0`` means greedy (argmax). ``top_k == 0`` and ``top_p == 1`` disable those filters.
    ``stop_token_ids``: generation stops after emitting one of these; the stop token is part of the output.
    ``ignore_eos`` is not needed: a request stops only on its own ``stop_token_ids`` (benchmarks pass none).
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()

    def validate(self) -> None:
        """Raise ``ModelRequestError`` naming the bad field."""
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 0:
            raise ModelRequestError(f"SamplingParams.max_new_tokens must be an int >= 0, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ModelRequestError(f"SamplingParams.temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ModelRequestError(f"SamplingParams.top_p must be in (0, 1], got {self.top_p!r}")
        if self.top_k < 0:
            raise ModelRequestError(f"SamplingParams.top_k must be >= 0 (0 = off), got {self.top_k!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@runtime_checkable
class TokenConstraint(Protocol):
    """A grammar (or any token filter) that the engine consults for one sequence.

    The engine calls, per generated token: ``apply(logits)`` (mask disallowed ids to ``-inf`` in place on a
    1-D fp32 row), samples, then ``advance(token)``; if ``is_finished()`` the sequence stops with ``"stop"``.
    """

    def apply(self, logits: torch.Tensor) -> None: ...

    def advance(self, token_id: int) -> None: ...

    def is_finished(self) -> bool: ...


@dataclass
class GenerationResult:
    """The outcome of one request."""

    token_ids: list[int]
    finish_reason: str  # "stop" | "length" | "cancelled" | "error"
    prompt_tokens: int
    cached_prompt_tokens: int
    error: str | None = None  # set when finish_reason == "error"


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass(eq=False)
class GenerationHandle:
    """A submitted request. Iterate it (``async for tok in handle``) to stream ids; ``await result()``.

    Thread-safe: the engine thread pushes tokens; any number of asyncio loops (or threads, via
    :meth:`wait`/:meth:`iter_tokens`) consume them.
    """

    request_id: int
    prompt_tokens: int
    _cancel_cb: object = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cond: threading.Condition = field(init=False, repr=False)
    _tokens: list[int] = field(default_factory=list, repr=False)
    _result: GenerationResult | None = field(default=None, repr=False)
    _waiters: list[_Waiter] = field(default_factory=list, repr=False)
    _cancelled: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    # ---- engine side -------------------------------------------------------------------------
    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            try:
                w.loop.call_soon_threadsafe(_wake, w.future)
            except RuntimeError:  # loop closed: nobody is listening any more
                pass
        self._cond.notify_all()

    def _push(self, token_id: int) -> None:
        with self._lock:
            self._tokens.append(token_id)
            self._notify()

    def _finish(self, result: GenerationResult) -> None:
        with self._lock:
            if self._result is not None:
                return
            self._result = result
            self._notify()

    # ---- caller side -------------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def done(self) -> bool:
        return self._result is not None

    def cancel(self) -> None:
        """Stop generating and free the slot; ``result().finish_reason`` becomes ``"cancelled"``."""
        if self._cancelled or self._result is not None:
            return
        self._cancelled = True
        cb = self._cancel_cb
        if callable(cb):
            cb(self)

    async def _wait_change(self, seen: int) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if len(self._tokens) > seen or self._result is not None:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(_Waiter(loop, fut))
        await fut

    def __aiter__(self) -> AsyncIterator[int]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[int]:
        i = 0
        while True:
            with self._lock:
                n = len(self._tokens)
                finished = self._result is not None
            while i < n:
                yield self._tokens[i]
                i += 1
            if finished:
                with self._lock:
                    if i >= len(self._tokens):
                        return
                continue
            await self._wait_change(i)

    async def result(self) -> GenerationResult:
        """Wait for the end of generation (tokens still stream to iterators meanwhile)."""
        while True:
            with self._lock:
                if self._result is not None:
                    return self._result
            await self._wait_change(len(self._tokens))

    # ---- blocking helpers for threads / sync code --------------------------------------------
    def wait(self, timeout: float | None = None) -> GenerationResult:
        """Block the calling thread until the request finishes."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._result is not None, timeout=timeout):
                raise TimeoutError(f"request {self.request_id} did not finish within {timeout} s")
            assert self._result is not None
            return self._result

    def iter_tokens(self) -> Iterator[int]:
        """Blocking iterator over generated ids (for non-async callers)."""
        i = 0
        while True:
            with self._cond:
                seen = i
                self._cond.wait_for(lambda seen=seen: len(self._tokens) > seen or self._result is not None)
                toks = self._tokens[i:]
                finished = self._result is not None
            yield from toks
            i += len(toks)
            if finished:
                return
