"""Run internals: per-node state, the compiled topology, and the ``TurnContext`` that records model and tool
calls, applies budgets and retries transient model errors."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

from tq_agents._record import request_hash
from tq_agents._tool import Tool, ToolError, ToolResult
from tq_agents.agent import Agent, TurnContext
from tq_agents.errors import ModelError, TransientModelError
from tq_agents.events import ModelCallFailed, ModelCallFinished, ToolCallFinished, ToolCallStarted
from tq_agents.messages import Message
from tq_agents.models.base import ChatModel, ChatRequest, ChatResponse, ToolCall

if TYPE_CHECKING:
    from tq_agents.graph import EdgeSpec, NodeSpec, Workflow
    from tq_agents.scheduler import Run

__all__: list[str] = []

_ENDED = ("completed", "failed")  # final statuses; a run stopped with any other status can be resumed
_CANCELLING = ("cancelled", "deadline", "failed")  # stops that cancel running turns (see Run._stop)


class _Stop(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class _Turn:
    __slots__ = ("inputs", "node", "responses", "rounds", "started", "task", "tools", "turn_id", "visit")

    def __init__(self, node: str, visit: int, inputs: list[Message]) -> None:
        self.node, self.visit, self.inputs = node, visit, inputs
        self.rounds: dict[str, int] | None = None  # any-join rounds it descends from (see Run._start_rounds)
        self.turn_id = f"{node}:{visit}"
        self.responses: dict[int, ChatResponse] = {}
        self.tools: dict[str, dict[str, Any]] = {}
        self.started = time.perf_counter()
        self.task: asyncio.Task[None] | None = None


class _Context(TurnContext):
    """Routes an agent's model and tool calls through the run: budgets, retries, recording, resume/replay."""

    def __init__(self, run: Run, turn: _Turn) -> None:
        self.run, self.turn = run, turn
        self.run_id = run.run_id
        self.turn_id = turn.turn_id
        self.retry = run.retry
        self._index = 0

    async def complete(self, agent: Agent, model: ChatModel, request: ChatRequest, index: int) -> ChatResponse:
        run, turn = self.run, self.turn
        self._index = index
        if run._stop_status in _CANCELLING:  # no new call once the run is stopping (a turn that ignored its cancel)
            raise asyncio.CancelledError
        recorded = turn.responses.get(index)
        if recorded is not None:  # resume: this call's answer is in the log already
            return recorded
        max_tokens = run.max_tokens
        if max_tokens is not None and run.total_tokens >= max_tokens:
            raise _Stop("max_tokens", f"token budget of {max_tokens} used up ({run.total_tokens})")
        rhash = request_hash(request)
        metadata = request.metadata
        metadata["run_id"] = run.run_id  # lets backends tag records they append to the store
        metadata["turn_id"] = turn.turn_id
        t0 = time.perf_counter()
        if run.replay is not None:
            response = run.replay.model_response(turn, index, rhash)
        else:
            try:  # fast path: no retry machinery (and no extra coroutine) unless the first call fails
                response = await model.complete(request)
            except TransientModelError as e:
                response = await self._retry(model, request, index, e)
            except ModelError as e:  # not worth retrying: logged, so that a replay fails this call the same way
                self._failed(index, 1, e, False)
                raise
        dt = time.perf_counter() - t0
        usage = response.usage
        run.prompt_tokens += usage.prompt_tokens
        run.completion_tokens += usage.completion_tokens
        run.cached_prompt_tokens += usage.cached_prompt_tokens
        run.total_tokens += usage.prompt_tokens + usage.completion_tokens
        run._log(
            ModelCallFinished,
            {
                "node": turn.node,
                "turn_id": turn.turn_id,
                "index": index,
                "response": response,
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "duration_s": round(dt, 7),  # 0.1 us: a shorter log row
                "tokens_per_s": round(usage.completion_tokens / dt, 1) if dt > 0 else 0.0,
                "request_hash": rhash,
                "prompt_messages": len(request.messages),
            },
        )
        return response

    async def _retry(
        self, model: ChatModel, request: ChatRequest, index: int, first: TransientModelError
    ) -> ChatResponse:
        """The first attempt (the fast path's) raised ``first``: retry with the policy's backoff (tenacity),
        logging each failed attempt."""
        attempts = max(1, self.retry.attempts)
        attempt = 0
        async for a in self.retry.retrying():
            with a:
                attempt += 1
                try:
                    if attempt == 1:
                        raise first  # already made: tenacity's first wait comes before attempt 2, as in TurnContext
                    return await model.complete(request)
                except TransientModelError as e:
                    self._failed(index, attempt, e, attempt < attempts)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, index: int, attempt: int, e: Exception, will_retry: bool) -> None:
        run, turn = self.run, self.turn
        run._emit(
            ModelCallFailed(
                run_id=run.run_id,
                node=turn.node,
                turn_id=turn.turn_id,
                index=index,
                attempt=attempt,
                error=f"{type(e).__name__}: {e}",
                will_retry=will_retry,
            )
        )

    async def call_tool(self, agent: Agent, tool: Tool, call: ToolCall) -> ToolResult | ToolError:
        run, turn = self.run, self.turn
        if run._stop_status in _CANCELLING:  # no new tool call once the run is stopping
            raise asyncio.CancelledError
        key = f"{self._index}:{call.id}"
        recorded = turn.tools.get(key)
        if recorded is None and run.replay is not None:
            recorded = run.replay.tool_result(turn, key, call)
        if recorded is not None:  # never execute a recorded tool call again
            return ToolResult.model_validate(recorded) if recorded.get("ok") else ToolError.model_validate(recorded)
        run._emit(
            ToolCallStarted(
                run_id=run.run_id,
                node=turn.node,
                turn_id=turn.turn_id,
                key=key,
                tool=tool.name,
                arguments=call.arguments,
            )
        )
        run.store.flush()  # durable before it runs: the log shows a call that may have had its effect
        res = await tool.call(call.arguments)
        run._emit(
            ToolCallFinished(
                run_id=run.run_id,
                node=turn.node,
                turn_id=turn.turn_id,
                key=key,
                tool=tool.name,
                ok=res.ok,
                result=res.model_dump(mode="json"),
            )
        )
        run.store.flush()  # a tool result is made durable at once, so a crash cannot re-run the tool
        return res


@dataclass(frozen=True, slots=True)
class _Topology:
    """Per-node graph facts, computed once per validated workflow version."""

    spec: NodeSpec
    preds: list[str]
    out_edges: list[EdgeSpec]
    reach: dict[str, set[str]]
    feeds: frozenset[str]  # an any-join of several predecessors: the nodes that lead to it, itself included
    forks_for: frozenset[str]  # the any-joins towards which this node's edges split outside its own loop


def _ancestors_without(g: nx.DiGraph, start: str, skip: str) -> set[str]:
    """``start`` and its ancestors in ``g`` along paths that avoid ``skip`` (one search over the predecessors it
    reaches; no subgraph view, whose lookups made a wide join's topology quadratic)."""
    seen = {start}
    stack = [start]
    pred = g.pred
    while stack:
        for p in pred[stack.pop()]:
            if p != skip and p not in seen:
                seen.add(p)
                stack.append(p)
    return seen


def _topology(wf: Workflow) -> dict[str, _Topology]:
    # cached on the workflow itself per graph version (a module-level cache keyed by id(wf) would hand a new
    # workflow the topology of a freed one that had the same id)
    cached = wf._topology_cache
    if cached is not None and cached[0] == wf._version:
        return cached[1]
    g = wf.graph
    feeds = {  # per any-join of several predecessors: the nodes that lead to it, itself included
        s.name: frozenset(nx.ancestors(g, s.name) | {s.name})
        for s in wf.nodes()
        if s.join == "any" and g.in_degree(s.name) > 1
    }
    loop_of = {n: i for i, c in enumerate(nx.strongly_connected_components(g)) for n in c} if feeds else {}
    topo = {}
    for spec in wf.nodes():
        name = spec.name
        preds = list(g.predecessors(name))
        reach: dict[str, set[str]] = {}
        if spec.join == "all" and len(preds) > 1:
            for p in preds:
                reach[p] = _ancestors_without(g, p, name)
        out = [g.edges[name, t]["spec"] for t in g.successors(name)]
        # the any-joins this node's edges split towards, outside its own loop (see Run._end_rounds)
        away = {t for t in g.successors(name) if loop_of.get(t) != loop_of.get(name)}
        forks_for = frozenset(j for j, f in feeds.items() if len(away & f) > 1)
        topo[name] = _Topology(spec, preds, out, reach, feeds.get(name, frozenset()), forks_for)
    wf._topology_cache = (wf._version, topo)
    return topo


class _Node:
    __slots__ = (
        "any_join",
        "busy",
        "feeds",
        "fired",
        "forks_for",
        "history",
        "inbox",
        "out_edges",
        "preds",
        "reach",
        "sink",
        "spec",
        "visits",
    )

    def __init__(self, topo: _Topology) -> None:
        self.spec = topo.spec
        self.preds = topo.preds
        self.out_edges = topo.out_edges
        self.reach = topo.reach
        self.sink = not self.out_edges
        self.visits = 0
        self.busy = False
        self.inbox: deque[tuple[str, Message]] = deque()
        # an any-join of several predecessors fires once per round: the forks it has fired for, and the nodes
        # that lead to it (see Run._start_rounds)
        self.any_join = self.spec.join == "any" and len(self.preds) > 1
        self.fired: set[int] = set()
        self.feeds = topo.feeds
        self.forks_for = topo.forks_for
        self.history: list[tuple[list[Message], Message]] = []
