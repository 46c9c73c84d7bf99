"""Reading a run's event log back: per-turn records used by resume and replay."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import to_json

from tq_agents.events import (
    Event,
    InputDropped,
    MessageEmitted,
    ModelCallFailed,
    ModelCallFinished,
    ModelCallStarted,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    event_from_stored,
)
from tq_agents.messages import Message
from tq_agents.models.base import ChatRequest, ChatResponse
from tq_agents.store import RunStore

__all__ = ["RunRecord", "TurnRecord", "request_hash"]


_PREFIX_HASHES: dict[tuple[Any, ...], Any] = {}


def request_hash(request: ChatRequest) -> str:
    """A stable fingerprint of what a request asks (messages, tools, output format, sampling), for replay.

    blake2b over the fields and messages joined by the unit separator (0x1f). The hash state after the fixed
    part (request settings, tool names and a leading system message) is cached, so an agent's repeated prefix
    is hashed once; the digest is the same as hashing the whole text."""
    temperature, top_p, max_tokens, seed = request.temperature, request.top_p, request.max_tokens, request.seed
    thinking = request.enable_thinking
    if not (
        (thinking is None or type(thinking) is bool)
        and type(temperature) is float
        and type(top_p) is float
        and (max_tokens is None or type(max_tokens) is int)
        and (seed is None or type(seed) is int)
    ):  # e.g. an int assigned after validation: 1 == 1.0 as cache keys, but "1" != "1.0" in the hashed text
        return _request_hash_reference(request)
    rf = request.response_format
    tools = request.tools
    msgs = request.messages
    start = 0
    system = ""
    if msgs and msgs[0].role == "system" and not msgs[0].tool_calls:
        system = msgs[0].content or ""
        start = 1
    key = (
        request.agent,
        request.tool_choice,
        rf["json_schema"]["name"] if rf else "",
        max_tokens,
        temperature,
        top_p,
        seed,
        thinking,
        tuple([t["function"]["name"] for t in tools]) if tools else (),
        start,
        system,
    )
    h = _PREFIX_HASHES.get(key)
    if h is None:
        agent, choice, rf_name, max_tokens, temperature, top_p, seed, thinking, names = key[:9]
        header = f"{agent}|{choice}|{rf_name}|{max_tokens}|{temperature}|{top_p}|{seed}|{thinking}"
        text = f"{header}\x1f{','.join(names)}"
        if start:
            text += f"\x1fsystem\x1f{system}"
        h = hashlib.blake2b(text.encode(), digest_size=12)
        if len(_PREFIX_HASHES) >= 1024:
            _PREFIX_HASHES.clear()
        _PREFIX_HASHES[key] = h
    h = h.copy()
    parts = [""]
    for m in msgs[start:] if start else msgs:
        parts.append(m.role)
        parts.append(m.content or "")
        if m.tool_calls:
            parts.append(to_json([c.to_openai() for c in m.tool_calls]).decode())
    if len(parts) > 1:
        h.update("\x1f".join(parts).encode())
    return h.hexdigest()


def _request_hash_reference(request: ChatRequest) -> str:
    """The definition ``request_hash`` computes incrementally (kept for the test that checks they agree)."""
    rf = request.response_format
    parts = [
        f"{request.agent}|{request.tool_choice}|{rf['json_schema']['name'] if rf else ''}|{request.max_tokens}|"
        f"{request.temperature}|{request.top_p}|{request.seed}|{request.enable_thinking}",
        ",".join(t["function"]["name"] for t in request.tools),
    ]
    for m in request.messages:
        parts.append(m.role)
        parts.append(m.content or "")
        if m.tool_calls:
            parts.append(to_json([c.to_openai() for c in m.tool_calls]).decode())
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=12).hexdigest()


@dataclass
class TurnRecord:
    """What the log holds about one turn."""

    turn_id: str
    node: str
    visit: int
    inputs: list[str]
    request_hashes: dict[int, str] = field(default_factory=dict)
    responses: dict[int, ChatResponse] = field(default_factory=dict)
    failures: dict[int, str] = field(default_factory=dict)  # model calls that failed for good: the error
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: list[Message] = field(default_factory=list)
    finished: NodeFinished | None = None


@dataclass
class RunRecord:
    """A run's log as typed events plus per-turn records."""

    run_id: str
    events: list[Event]
    started: RunStarted | None = None
    finished: RunFinished | None = None
    turns: dict[str, TurnRecord] = field(default_factory=dict)
    # the budgets in force at the end: the run's, or those of its last resume
    budgets: dict[str, Any] = field(default_factory=dict)
    # the process running it: that of its start or last resume, unless a RunFinished came after; (host, pid,
    # since when) where recorded
    owner: tuple[str, int, float] | None = None

    @classmethod
    def load(cls, store: RunStore, run_id: str) -> RunRecord:
        """Load ``run_id`` from ``store`` (``RunNotFoundError`` if unknown)."""
        events: list[Event] = []
        for row in store.load_events(run_id):
            ev = event_from_stored(row.run_id, row.seq, row.ts, row.kind, row.payload)
            if ev is not None:
                events.append(ev)
        rec = cls(run_id=run_id, events=events)
        for ev in events:
            if isinstance(ev, RunStarted):
                rec.started = ev
                rec.budgets = dict(ev.budgets)
                rec.owner = (ev.host, ev.pid, ev.ts) if ev.pid is not None else None
            elif isinstance(ev, RunResumed):
                if ev.budgets:
                    rec.budgets = dict(ev.budgets)
                rec.owner = (ev.host, ev.pid, ev.ts) if ev.pid is not None else None
            elif isinstance(ev, RunFinished):
                rec.finished = ev
                rec.owner = None  # ended or stopped: no process runs it now
            elif isinstance(ev, NodeStarted):
                rec.turns[ev.turn_id] = TurnRecord(ev.turn_id, ev.node, ev.visit, list(ev.inputs))
            elif isinstance(ev, ModelCallStarted) and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].request_hashes[ev.index] = ev.request_hash
            elif isinstance(ev, ModelCallFinished) and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].responses[ev.index] = ev.response
                if ev.request_hash:
                    rec.turns[ev.turn_id].request_hashes[ev.index] = ev.request_hash
            elif isinstance(ev, ModelCallFailed) and not ev.will_retry and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].failures[ev.index] = ev.error
            elif isinstance(ev, ToolCallFinished) and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].tools[ev.key] = ev.result
            elif isinstance(ev, MessageEmitted) and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].outputs.append(ev.message)
            elif isinstance(ev, NodeFinished) and ev.turn_id in rec.turns:
                rec.turns[ev.turn_id].finished = ev
        return rec

    def dropped(self) -> list[InputDropped]:
        return [e for e in self.events if isinstance(e, InputDropped)]
