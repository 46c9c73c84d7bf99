"""Record/replay at the model boundary.

``RecordingModel(inner, store, run_id)`` wraps any ``ChatModel`` and appends one ``model_call`` event per request
to the run store: the request, the exact prompt (text and token ids when the backend renders one), sampling
parameters and seed, the model id and revision/hash, the grammar sent (text and hash), and the response (or the
error). ``ReplayModel(store, run_id)`` answers from that record without any model, and raises
``ReplayDivergenceError`` naming the first request that differs from the recorded one (and where it differs).

Requests are matched per agent (``ChatRequest.agent``) in order, so concurrent branches may interleave
differently on replay without counting as a divergence. The run-specific ``metadata`` the scheduler sets on every
request (``run_id``, ``turn_id``) is recorded but left out of the comparison, so a recorded workflow replays in a
new run. Several recording sessions may append to one run: each continues after the calls already recorded.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any

from tq_agents import errors as _errors
from tq_agents.errors import ModelError, ReplayDivergenceError, RunNotFoundError, TQError
from tq_agents.models.base import ChatModel, ChatRequest, ChatResponse

__all__ = ["EVENT_KIND", "RecordingModel", "ReplayModel", "first_difference", "request_fingerprint"]

EVENT_KIND = "model_call"
RUN_METADATA = ("run_id", "turn_id")  # set on each request by the scheduler (tq_agents._turn): differs per run


def _canonical(request: ChatRequest) -> dict[str, Any]:
    return request.model_dump(mode="json")


def _comparable(request: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical request without the run-specific metadata (``RUN_METADATA``), for matching across runs."""
    out = dict(request)
    metadata = out.get("metadata")
    if isinstance(metadata, Mapping):
        out["metadata"] = {k: v for k, v in metadata.items() if k not in RUN_METADATA}
    return out


def request_fingerprint(request: ChatRequest) -> str:
    """sha256 of the request's canonical JSON (sorted keys), run-specific metadata (``RUN_METADATA``) left out."""
    data = json.dumps(_comparable(_canonical(request)), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()


def first_difference(recorded: Any, actual: Any, path: str = "request") -> tuple[str, Any, Any] | None:
    """The first path where two JSON values differ, with both values; ``None`` when equal."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        for key in list(recorded) + [k for k in actual if k not in recorded]:
            if key not in actual or key not in recorded:
                return f"{path}.{key}", recorded.get(key, "<absent>"), actual.get(key, "<absent>")
            diff = first_difference(recorded[key], actual[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(recorded, list) and isinstance(actual, list):
        for i, (a, b) in enumerate(zip(recorded, actual, strict=False)):
            diff = first_difference(a, b, f"{path}[{i}]")
            if diff:
                return diff
        if len(recorded) != len(actual):
            return f"{path} (length)", len(recorded), len(actual)
        return None
    return None if recorded == actual else (path, recorded, actual)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class RecordingModel:
    """Wraps ``inner`` and records every request/response into ``store`` under ``run_id``.

    The run is created (workflow ``"model-record"``) when the store does not hold it yet; when it holds recorded
    calls already, this session's calls are numbered after them. Errors raised by the inner model (its
    ``prepare`` included) are recorded too, then re-raised.
    """

    def __init__(self, inner: ChatModel, store: Any, run_id: str, *, workflow: str = "model-record") -> None:
        self.inner = inner
        self.store = store
        self.run_id = run_id
        self._index = 0
        self._lock = asyncio.Lock()
        try:
            store.get_run(run_id)
        except RunNotFoundError:
            store.create_run(run_id, workflow=workflow, meta={"model": inner.model_name})
        else:  # an earlier session recorded into this run: continue after its calls
            ordered = _in_recorded_order([e for e in store.load_events(run_id) if e.kind == EVENT_KIND])
            self._index = int(ordered[-1].payload.get("index", -1)) + 1 if ordered else 0

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    def _prompt(self, request: ChatRequest) -> dict[str, Any]:
        """Prompt text/tokens and grammar as the backend will send them (when it can say)."""
        out: dict[str, Any] = {"prompt_text": None, "prompt_tokens": None, "grammar": None}
        prepare = getattr(self.inner, "prepare", None)
        render = getattr(self.inner, "render", None)
        if callable(prepare):  # LocalQwen
            prep = prepare(request)
            out.update(prompt_text=prep.text, prompt_tokens=prep.token_ids, grammar=prep.grammar)
        elif callable(render) and getattr(self.inner, "mode", None) == "raw":  # OpenAICompatible raw
            text, grammar = render(request)
            out.update(prompt_text=text, grammar=grammar)
        if out["grammar"] is not None:
            out["grammar_sha256"] = hashlib.sha256(out["grammar"].encode()).hexdigest()
        return out

    def _model_info(self) -> dict[str, Any]:
        inner = self.inner
        return {
            "name": inner.model_name,
            "backend": type(inner).__name__,
            "revision": getattr(inner, "revision", None),
            "family": getattr(inner, "family", None),
            "dtype": getattr(inner, "dtype", None),
            "base_url": getattr(inner, "base_url", None),
            "mode": getattr(inner, "mode", None),
        }

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Forward to the inner model and record the exchange (or the error it raised)."""
        async with self._lock:
            index = self._index
            self._index += 1
        event: dict[str, Any] = {
            "index": index,
            "agent": request.agent,
            "request": _canonical(request),
            "request_sha256": request_fingerprint(request),
            "sampling": {
                "temperature": request.temperature,
                "top_p": request.top_p,
                "seed": request.seed,
                "max_tokens": request.max_tokens,
                "stop": request.stop,
                "tool_choice": request.tool_choice,
            },
            "model": self._model_info(),
            "prompt_text": None,
            "prompt_tokens": None,
            "grammar": None,
        }
        try:
            event.update(await asyncio.to_thread(self._prompt, request))  # LocalQwen.prepare may refuse the request
            response = await self.inner.complete(request)
        except TQError as e:
            event["error"] = {"type": type(e).__name__, "message": e.message, "hint": e.hint}
            self.store.append(self.run_id, EVENT_KIND, event)
            raise
        event["response"] = response.model_dump(mode="json")
        self.store.append(self.run_id, EVENT_KIND, event)
        return response


class ReplayModel:
    """Answers requests from a recorded run; the first request that differs raises ``ReplayDivergenceError``.

    ``divergence`` keeps that first difference (``None`` while the replay is faithful); ``remaining()`` counts
    recorded calls not asked for yet.
    """

    def __init__(self, store: Any, run_id: str, *, model_name: str | None = None) -> None:
        self.store = store
        self.run_id = run_id
        events = [e for e in store.load_events(run_id) if e.kind == EVENT_KIND]
        if not events:
            raise RunNotFoundError(
                f"run {run_id!r} holds no recorded model calls",
                hint="record with RecordingModel(model, store, run_id) first",
            )
        self._queues: dict[str | None, deque[dict[str, Any]]] = defaultdict(deque)
        for e in _in_recorded_order(events):
            self._queues[e.payload.get("agent")].append(e.payload)
        self._model_name = model_name or str(events[0].payload.get("model", {}).get("name", "replay"))
        self.divergence: str | None = None
        self.served = 0

    @property
    def model_name(self) -> str:
        return self._model_name

    def remaining(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def _diverge(self, text: str) -> ReplayDivergenceError:
        if self.divergence is None:
            self.divergence = text
        return ReplayDivergenceError(text, hint="the code, prompts or inputs changed since the run was recorded")

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The recorded response to ``request`` (which must equal the recorded request)."""
        queue = self._queues.get(request.agent)
        who = f"agent {request.agent!r}" if request.agent else "the model"
        if not queue:
            raise self._diverge(
                f"request #{self.served + 1} from {who} has no recorded counterpart "
                f"(the record holds {self.served + self.remaining()} model calls)"
            )
        rec = queue[0]
        diff = first_difference(_comparable(rec["request"]), _comparable(_canonical(request)))
        if diff is not None:
            path, old, new = diff
            raise self._diverge(
                f"request #{rec['index'] + 1} from {who} differs from the recorded one at {path}: "
                f"recorded {_short(old)}, now {_short(new)}"
            )
        queue.popleft()
        self.served += 1
        if "error" in rec:
            raise _recorded_error(rec["error"])
        return ChatResponse.model_validate(rec["response"])


def _in_recorded_order(events: list[Any]) -> list[Any]:
    """``model_call`` events in the order their calls were made: by session, then ``index`` within a session.

    A session's indices are unique (concurrent calls may be stored out of index order); records of older
    versions restart at 0 in each session, so a repeated index (in store order) starts a new session.
    """
    session, seen, keyed = 0, set(), []
    for e in sorted(events, key=lambda e: e.seq):
        index = e.payload.get("index", e.seq)
        if index in seen:
            session, seen = session + 1, set()
        seen.add(index)
        keyed.append(((session, index, e.seq), e))
    return [e for _, e in sorted(keyed, key=lambda pair: pair[0])]


def _recorded_error(err: Mapping[str, Any]) -> TQError:
    """The recorded error as its own type (a ``TransientModelError`` stays retryable), or a ``ModelError`` naming
    the recorded type when that is not one of ``tq_agents.errors`` (built from a message and a hint)."""
    name = str(err.get("type", "ModelError"))
    cls = getattr(_errors, name, None)
    message = str(err.get("message", ""))
    own = name in _errors.__all__ and isinstance(cls, type) and issubclass(cls, TQError)
    if own and cls.__init__ is TQError.__init__:  # built from (message, hint=...)
        return cls(f"(replayed) {message}", hint=err.get("hint"))
    return ModelError(f"(replayed) {name}: {message}", hint=err.get("hint"))
