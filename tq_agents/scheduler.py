"""The asyncio scheduler: runs a validated ``Workflow``, records every event, resumes and replays runs.

```python
result = await workflow.run("input", store="runs.sqlite", max_turns=20, deadline_s=60)
run = workflow.start("input")                 # a Run handle, inside an event loop
async for ev in run.events(): ...             # typed events, each only once durable in the store
run.cancel()                                  # ends the run with status "cancelled"
result = await tq_agents.resume(run_id, workflow, store)   # finish a crashed run
report = await tq_agents.replay(run_id, workflow, store)   # re-execute with recorded model outputs
```

Ready nodes run concurrently (fan-out branches reach the model at the same time). A node runs one turn at a
time. Budgets (``max_turns``, ``max_tokens``, ``deadline_s``) and cancellation end the run with a status —
``completed | failed | cancelled | max_turns | max_tokens | deadline`` — never with an exception.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError

from tq_agents._record import RunRecord
from tq_agents._turn import _CANCELLING, _ENDED, _Context, _Node, _Stop, _topology, _Turn
from tq_agents.agent import RetryPolicy
from tq_agents.errors import ConfigError, RunError, UserError
from tq_agents.events import (
    Event,
    InputDropped,
    MessageEmitted,
    ModelCallFinished,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallFinished,
)
from tq_agents.messages import Message, TextMessage, UserInput, _Ids, _new_id
from tq_agents.models.base import ChatModel, Usage, check_chat_model
from tq_agents.store import RunStore, _dumps, open_store

if TYPE_CHECKING:
    from tq_agents._replay import ReplaySource
    from tq_agents.graph import EdgeSpec, NodeSpec, Workflow

__all__ = ["Run", "RunResult", "resume", "start_resume", "start_run"]

_INPUT = "__input__"
_DEFAULT_RETRY = RetryPolicy()  # frozen: one shared instance, not one per run
_get_running_loop = asyncio._get_running_loop  # the running loop or None, without raising
_NO_USAGE = Usage()
_VISIT_BOUND = "visit bound reached"


@dataclass
class RunResult:
    """How a run ended. ``status``: completed | failed | cancelled | max_turns | max_tokens | deadline.

    ``output`` is the message the run reports as its result, chosen by this rule: the last message emitted by a
    sink node (a node with no outgoing edges), else — when no sink emitted any — the last message emitted by any
    node, else ``None``. "Last" is in log order, i.e. the order in which turns completed (a function node that
    returns several messages: the last of them); the run input never counts. The rule holds whatever the
    status, so a failed, cancelled or budget-stopped run reports the last message made before it stopped (often
    an intermediate one: check ``status``/``ok`` before using it). With several sinks on concurrent branches,
    ``output`` is the one whose turn happened to finish last, which depends on timing: read the message you
    want from ``messages`` (by ``source`` / type) instead. A resumed run applies the same rule to its whole log.

    ``messages``: every message of the run (the input first), in log order. ``usage``: the whole run's tokens
    (``cached_prompt_tokens`` being part of ``prompt_tokens``).
    """

    run_id: str
    workflow: str
    status: str
    reason: str = ""
    output: Message | None = None
    messages: list[Message] = field(default_factory=list)
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the run completed (any other status: failed, cancelled, or stopped by a budget)."""
        return self.status == "completed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (for ``tq run --json``): run id, status, reason, turns, tokens, final message."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "reason": self.reason,
            "turns": self.turns,
            "tokens": {
                "prompt": self.usage.prompt_tokens,
                "completion": self.usage.completion_tokens,
                "total": self.usage.total_tokens,
            },
            "duration_s": round(self.duration_s, 6),
            "output": self.output.to_dict() if self.output is not None else None,
        }


class Run:
    """A running (or finished) workflow run. Create with ``Workflow.start`` / ``start_run``.

    ``await run.result()`` waits for the ``RunResult``; ``run.events()`` streams durable events;
    ``run.cancel()`` stops it with status ``cancelled``.
    """

    def __init__(
        self,
        workflow: Workflow,
        *,
        store: RunStore,
        model: ChatModel | None,
        max_turns: int | None,
        max_tokens: int | None,
        deadline_s: float | None,
        retry: RetryPolicy | None,
        run_id: str,
        replay: ReplaySource | None = None,
        stream: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.workflow = workflow
        self.store = store
        self.model = model or workflow.model
        self.max_turns, self.max_tokens, self.deadline_s = max_turns, max_tokens, deadline_s
        self.retry = retry or _DEFAULT_RETRY
        self.run_id = run_id
        self._fresh_id = False
        self._owns_store = False  # opened from a path by start_run/start_resume: closed when the run ends
        self.replay = replay
        self.status = "running"
        self.prompt_tokens = self.completion_tokens = self.total_tokens = self.cached_prompt_tokens = 0
        self.turns = 0
        self.messages: dict[str, Message] = {}
        self._nodes = {name: _Node(t) for name, t in _topology(workflow).items()}
        # any-join rounds (see ``_start_rounds``; None without any-joins): per message id, per any-join, the fork
        # its round comes from; the nodes that lead to each any-join; the forks numbered so far
        self._rounds: dict[str, dict[str, int]] | None = {} if any(n.any_join for n in self._nodes.values()) else None
        self._feeds = {name: n.feeds for name, n in self._nodes.items() if n.any_join}
        self._forks = 0
        self._input_id = ""
        self._pending: dict[str, None] = {}
        self._running: dict[str, _Turn] = {}
        self._adopting: asyncio.Task[Any] | None = None  # the task that may run the next turn (``_end_turn``)
        self._adopted: tuple[_Node, _Turn] | None = None
        # inline mode (``Workflow.run``): the first turn runs in the awaiting task itself (see ``_drive``)
        self._inline = False
        self._inline_turn: tuple[_Node, _Turn] | None = None
        self._inline_task: asyncio.Task[Any] | None = None
        self._own_cancel = False
        self._events: list[Event] = []
        self._durable = 0
        self._wake: asyncio.Future[None] | None = None
        self._stop_status: str | None = None
        self._stop_reason = ""
        self._last_output: Message | None = None
        self._last_sink_output: Message | None = None
        self._t0 = time.perf_counter()
        self._deadline: asyncio.TimerHandle | None = None
        self._loop = loop or asyncio.get_running_loop()
        self._done: asyncio.Future[RunResult] = self._loop.create_future()
        self._result: RunResult | None = None
        # ``events()`` needs the durability callbacks and the event list; ``Workflow.run`` (no handle) does not
        self._stream = stream
        self._unsubscribe = store.subscribe(run_id, self._on_durable) if stream else _noop
        self._append = store.append_json
        if self.model is None:
            for name, node in self._nodes.items():
                agent = node.spec.agent
                if agent is not None and agent.model is None:
                    self._unsubscribe()
                    raise UserError(
                        f"agent {name!r} has no model and the workflow has none",
                        hint="pass model=... to the Agent, to Workflow(...), or to run()/start()",
                    )

    # ---- public -----------------------------------------------------------------------------------
    @property
    def usage(self) -> Usage:
        """Tokens used so far by this run (``cached_prompt_tokens``: those of ``prompt_tokens`` that a backend
        served from its prefix cache)."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cached_prompt_tokens=self.cached_prompt_tokens,
        )

    async def result(self) -> RunResult:
        """Wait for the run to end; every event is durable when this returns."""
        return await asyncio.shield(self._done)

    def cancel(self, reason: str = "cancelled by the caller") -> None:
        """End the run with status ``cancelled``; in-flight turns are cancelled (and resumable)."""
        self._stop("cancelled", reason)

    async def events(self) -> AsyncIterator[Event]:
        """Every event of this run (from its start in this process), each only once durable in the store."""
        if not self._stream:
            raise RunError("this run was started without an event stream", hint="use Workflow.start() to stream")
        i = 0
        while True:
            while i < len(self._events) and self._events[i].seq <= self._durable:
                ev = self._events[i]
                i += 1
                yield ev
                if isinstance(ev, RunFinished):
                    return
            if self._result is not None and i >= len(self._events):
                return  # a run that had ended before this process (resume of a finished run)
            if self._wake is None or self._wake.done():
                self._wake = self._loop.create_future()
            await asyncio.shield(self._wake)

    # ---- plumbing ---------------------------------------------------------------------------------
    def _on_durable(self, seq: int) -> None:
        if _get_running_loop() is not self._loop:  # a commit made in another thread (e.g. a sync tool's append)
            if not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._on_durable, seq)
            return
        if seq <= self._durable:
            return
        self._durable = seq
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _emit(self, ev: Event) -> None:
        # encoded once, here (a snapshot: later changes to a message cannot alter what was logged)
        try:
            data = ev.payload_json().decode()
        except PydanticSerializationError:
            data = _dumps(ev.payload())  # raises the StoreError that names the problem
        ev.seq = self._append(self.run_id, ev.kind, data, ev.ts)
        if self._stream:
            self._events.append(ev)

    def _log(self, cls: type[Event], fields: dict[str, Any]) -> None:
        """Log an event of kind ``cls`` with payload ``fields``. The event object is built only for a run whose
        events are streamed; otherwise the payload is encoded straight from ``fields`` (same stored JSON)."""
        if self._stream:
            self._emit(cls(run_id=self.run_id, **fields))
            return
        try:
            data = cls.encode(self.run_id, fields).decode()
        except PydanticSerializationError:
            data = _dumps(fields)  # raises the StoreError that names the problem
        self._append(self.run_id, cls.kind, data, time.time())

    def _begin(self, input_msg: Message) -> None:
        wf = self.workflow
        entries = wf.entry_nodes()
        for e in entries:
            accepted = self._nodes[e].spec.input_types
            if not isinstance(input_msg, accepted):
                raise UserError(
                    f"entry node {e!r} accepts {', '.join(t.type_name for t in accepted)}, "
                    f"but the run input is a {input_msg.type_name}",
                    hint="pass an input message of an accepted type",
                )
        budgets = {"max_turns": self.max_turns, "max_tokens": self.max_tokens, "deadline_s": self.deadline_s}
        self.store.create_run(
            self.run_id, workflow=wf.name, meta={"input": input_msg.to_prompt()[:200]}, check=not self._fresh_id
        )
        self._log(
            RunStarted,
            {
                "workflow": wf.name,
                "input": input_msg.to_dict(),
                "entries": entries,
                "budgets": budgets,
                "pid": _owner.pid,
                "host": _owner.host,
            },
        )
        self.messages[input_msg.id] = input_msg
        self._input_id = input_msg.id
        for e in entries:
            self._deliver(e, _INPUT, input_msg, live=True)

    def _go(self) -> None:
        if self.deadline_s is not None:
            self._deadline = self._loop.call_later(
                self.deadline_s, self._stop, "deadline", f"deadline of {self.deadline_s:g} s reached"
            )
        self._schedule()
        if not self._running:
            self._finish()

    def _deliver(self, target: str, pred: str, msg: Message, *, live: bool) -> None:
        """Queue ``msg`` from ``pred`` for ``target``.

        An any-join fires once per round: on the first message of the round (see ``_start_rounds``). A message
        of a round the join has already fired in is late, and dropped."""
        node = self._nodes[target]
        if node.any_join and pred != _INPUT and self._round_of(msg, target) in node.fired:
            if live:
                self._emit(self._late(node, pred, msg))
            return
        node.inbox.append((pred, msg))
        self._pending[target] = None

    def _round_of(self, msg: Message, join: str) -> int:
        rounds = self._rounds.get(msg.id) if self._rounds is not None else None
        return rounds.get(join, 0) if rounds else 0

    def _late(self, node: _Node, pred: str, msg: Message) -> InputDropped:
        return InputDropped(
            run_id=self.run_id,
            node=node.spec.name,
            messages=[msg.id],
            reason=f"late arrival from {pred!r} at an any-join that already fired this round "
            f"(round {self._round_of(msg, node.spec.name)})",
        )

    def _start_rounds(self, node: _Node, turn: _Turn, *, live: bool) -> None:
        """Any-join rounds (workflows with an any-join only). A round of an any-join J begins where work splits
        towards J: at a turn that routes to two or more nodes that lead to J (a fork; the run's start is fork 0),
        and at each firing of J itself (for what comes back round a loop). Every message carries, per J, the
        latest fork in its ancestry; J fires once per fork: on the first message from it. So a slow branch of a
        loop is late whichever round it lags into, a turn that returns several messages fires J once, and a
        loop that does not pass through J gives J one round per iteration.

        ``turn`` takes the latest fork per J over its inputs. When ``node`` is an any-join fired by a
        predecessor's message (not the run input), that fork is marked fired, what waits in its inbox from it
        is late and dropped (as on arrival, see ``_deliver``), and the turn's outputs start a new round of it."""
        rounds = self._rounds
        assert rounds is not None
        merged: dict[str, int] = {}
        for m in turn.inputs:
            for join, r in (rounds.get(m.id) or {}).items():
                if r > merged.get(join, 0):
                    merged[join] = r
        if node.any_join and turn.inputs:
            name = node.spec.name
            if turn.inputs[0].id != self._input_id:  # (the run input starts no round of its own)
                self._fired(node, merged.get(name, 0), live=live)
            self._forks += 1  # what this firing sends on, and what comes back round a loop, is a new round
            merged[name] = self._forks
        turn.rounds = merged

    def _fired(self, node: _Node, round_: int, *, live: bool) -> None:
        """Any-join ``node`` has had its turn of round ``round_`` (it fired, or its visits were used up): what
        waits in its inbox from that round is late, and dropped."""
        node.fired.add(round_)
        name = node.spec.name
        late = [(p, m) for p, m in node.inbox if p != _INPUT and self._round_of(m, name) in node.fired]
        if late:
            ids = {m.id for _, m in late}
            node.inbox = deque((p, m) for p, m in node.inbox if m.id not in ids)
            if live:
                for p, m in late:
                    self._emit(self._late(node, p, m))

    def _end_rounds(self, turn: _Turn, outputs: list[Message], targets: set[str]) -> None:
        """``turn``'s outputs carry its rounds. A fork starts a new round of an any-join: a turn routing to two or
        more nodes that lead to it, or any turn (routing towards it) of a node whose edges split towards it
        outside the node's own loop, e.g. a loop S → S that sends to A and B, also on an iteration where a
        condition sends to A only (see ``_start_rounds``). Live and on rebuild alike, in log order."""
        rounds = self._rounds
        assert rounds is not None
        mine = turn.rounds or {}
        if targets:
            forks_for = self._nodes[turn.node].forks_for
            for join, feeds in self._feeds.items():
                leads = len(targets & feeds)
                if leads > 1 or (leads and join in forks_for):
                    self._forks += 1
                    mine = {**mine, join: self._forks}
        if mine:
            for m in outputs:
                rounds[m.id] = mine

    def _take(self, node: _Node, *, force: bool = False) -> list[Message] | None:
        """Inputs for the node's next turn (consumed from its inbox), or ``None`` if it is not ready."""
        inbox = node.inbox
        if not node.reach or len(inbox) == 0:
            return [inbox.popleft()[1]] if inbox else None
        present = {p for p, _ in inbox}
        if not force:
            nodes, me = self._nodes, node.spec.name
            for p in node.preds:  # p may still send if a node it descends from is busy or has work queued
                if p not in present and any(n != me and (nodes[n].busy or nodes[n].inbox) for n in node.reach[p]):
                    return None
        first: dict[str, Message] = {}  # one pass: each sender's oldest message is taken, the rest stay queued
        rest: deque[tuple[str, Message]] = deque()
        for q, m in inbox:
            if q in first:
                rest.append((q, m))
            else:
                first[q] = m
        node.inbox = rest
        return [first[p] for p in node.preds if p in first] + [first[p] for p in sorted(present - set(node.preds))]

    def _schedule(self) -> None:
        progress = True
        while progress and self._stop_status is None:
            progress = False
            for name in list(self._pending):
                node = self._nodes[name]
                if node.busy:
                    continue
                if not node.inbox:
                    del self._pending[name]
                    continue
                spec = node.spec
                if spec.max_visits is None or node.visits < spec.max_visits:  # (else no turn: inputs are dropped)
                    if self.max_turns is not None and self.turns >= self.max_turns:
                        self._stop("max_turns", f"turn budget of {self.max_turns} used up")
                        return
                    if self.max_tokens is not None and self.total_tokens >= self.max_tokens:
                        self._stop("max_tokens", f"token budget of {self.max_tokens} used up ({self.total_tokens})")
                        return
                inputs = self._take(node)
                if inputs is None:
                    continue
                if not node.inbox:
                    del self._pending[name]
                progress = True
                self._fire(node, inputs)
            if not progress and not self._running and self._pending and self._stop_status is None:
                node = self._nodes[next(iter(self._pending))]  # deadlock guard: fire a partial all-join
                inputs = self._take(node, force=True)
                if not node.inbox:
                    del self._pending[node.spec.name]
                if inputs:
                    progress = True
                    self._fire(node, inputs)

    def _fire(self, node: _Node, inputs: list[Message]) -> None:
        spec = node.spec
        if spec.max_visits is not None and node.visits >= spec.max_visits:
            self._emit(
                InputDropped(
                    run_id=self.run_id,
                    node=spec.name,
                    messages=[m.id for m in inputs],
                    reason=f"{_VISIT_BOUND} (max_visits={spec.max_visits})",
                    redirected_to=spec.on_exhausted,
                )
            )
            if spec.on_exhausted is not None:
                for m in inputs:
                    self._deliver(spec.on_exhausted, spec.name, m, live=True)
            if node.any_join and inputs and inputs[0].id != self._input_id:  # its round had its one go
                self._fired(node, self._round_of(inputs[0], spec.name), live=True)
            return
        node.visits += 1
        self.turns += 1
        turn = _Turn(spec.name, node.visits, inputs)
        if self._rounds is not None:
            self._start_rounds(node, turn, live=True)
        self._log(
            NodeStarted,
            {
                "node": spec.name,
                "turn_id": turn.turn_id,
                "visit": turn.visit,
                "inputs": [m.id for m in inputs],
            },
        )
        self._launch(node, turn)

    def _launch(self, node: _Node, turn: _Turn) -> None:
        node.busy = True
        self._running[turn.turn_id] = turn
        if self.replay is not None:
            self.replay.turn_started(turn.turn_id)
        if self._adopting is not None and self._adopted is None:
            # the task that just finished a turn runs this one next: no new task, same concurrency
            self._adopted = (node, turn)
            turn.task = self._adopting  # the current task (no current_task() lookup)
            return
        if self._inline:  # the first turn of a ``Workflow.run``: the awaiting task runs it (``_drive``)
            self._inline = False
            self._inline_turn = (node, turn)
            return
        turn.task = self._loop.create_task(self._run_turn(node, turn))
        turn.task.add_done_callback(self._task_done)

    async def _drive(self) -> RunResult:
        """Run the inline turn (and the turns it adopts) in the calling task, then wait for the end.

        Saves a task, its wake-ups and a shielded wait per run. Cancelling the calling task cancels the run
        (status ``cancelled``; resumable) and re-raises ``CancelledError``."""
        task = asyncio.current_task()
        assert task is not None
        try:
            pending = self._inline_turn
            if pending is not None:
                self._inline_turn = None
                node, turn = pending
                turn.task = self._inline_task = task
                try:
                    if self._stop_status is not None or self._result is not None:
                        self._end_turn(node, turn, adopt=False)  # stopped before it could start
                    else:
                        await self._run_turn(node, turn)
                finally:
                    self._inline_task = None
                if task.cancelling():  # a cancel reached the turn: ours (a stop) or the caller's
                    if not self._own_cancel:
                        raise asyncio.CancelledError
                    task.uncancel()
                    self._own_cancel = False
            if self._result is not None:
                return self._result
            return await asyncio.shield(self._done)
        except asyncio.CancelledError:
            self._stop("cancelled", "the task awaiting the run was cancelled")
            raise

    def _cancel(self, task: asyncio.Task[Any]) -> None:
        if task is self._inline_task:
            self._own_cancel = True
        task.cancel()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before it could clean up (e.g. before its first step) releases its turns here; one
        that died of an error no handler took stops the run as failed (never ``completed``)."""
        exc = None if task.cancelled() else task.exception()
        if exc is not None and self._stop_status is None and not isinstance(exc, KeyboardInterrupt | SystemExit):
            self._stop("failed", f"internal error: {type(exc).__name__}: {exc}")
        for t in [t for t in self._running.values() if t.task is task]:
            self._end_turn(self._nodes[t.node], t, adopt=False)

    async def _run_turn(self, node: _Node, turn: _Turn) -> None:
        """Run ``turn``, then each turn it hands over (``_end_turn``) in this same task: one coroutine frame
        for a whole chain of turns (the turn body is inlined here, not a coroutine per turn)."""
        try:
            while True:
                spec = node.spec
                outputs: list[Message] = []
                status, reason = "completed", ""
                usage = _NO_USAGE
                try:
                    if spec.agent is not None:
                        agent = spec.agent
                        res = await agent.run_turn(
                            turn.inputs,
                            history=node.history if agent.remember else (),
                            context=_Context(self, turn),
                            model=agent.model or self.model,
                        )
                        usage = res.usage
                        if res.output is not None:
                            outputs = [res.output]
                        else:
                            status, reason = "failed", res.reason
                    else:
                        outputs = await self._call_function(spec, turn.inputs)
                    if self.replay is not None:  # complete in the recorded order
                        await self.replay.in_order(self, turn)
                except _Stop as s:
                    self._stop(s.status, s.reason)
                    next_turn = self._end_turn(node, turn)
                    if next_turn is None:
                        return
                    node, turn = next_turn
                    continue
                except asyncio.CancelledError:
                    if self._stop_status is None:  # not cancelled by a stop of ours: the run's caller cancelled
                        self._stop("cancelled", f"the task running turn {turn.turn_id} was cancelled")
                    self._end_turn(node, turn, adopt=False)
                    return
                except (KeyboardInterrupt, SystemExit) as e:  # the process is going down: stop resumable, re-raise
                    self._stop("cancelled", f"{type(e).__name__} in turn {turn.turn_id}")
                    self._end_turn(node, turn, adopt=False)
                    raise
                except BaseException as e:  # any other error of the agent, a tool or a function fails the turn
                    status, reason = "failed", f"{type(e).__name__}: {e}"
                try:  # errors from here on (a bug, a broken store) reach the outer handler
                    self._complete_turn(node, turn, outputs, status, reason, usage)
                except _Stop as s:
                    self._stop(s.status, s.reason)
                next_turn = self._end_turn(node, turn)
                if next_turn is None:
                    return
                node, turn = next_turn
        except Exception as e:  # a bug or a broken store: end the run with a status instead of hanging
            self._crash(e)

    def _crash(self, e: BaseException) -> None:
        reason = f"internal error: {type(e).__name__}: {e}"
        if self._result is not None:
            return
        self._stop_status, self._stop_reason = "failed", reason
        for t in list(self._running.values()):
            if t.task is not None and t.task is not asyncio.current_task():
                self._cancel(t.task)
        self._running.clear()
        try:
            self._finish()
        except Exception:  # the store itself failed: report without it
            self._result = RunResult(self.run_id, self.workflow.name, "failed", reason, turns=self.turns)
            if not self._done.done():
                self._done.set_result(self._result)

    async def _call_function(self, spec: NodeSpec, inputs: list[Message]) -> list[Message]:
        assert spec.fn is not None
        arg: Any = inputs if spec.takes_list else inputs[0]
        out = spec.fn(arg)
        if spec.is_async or asyncio.iscoroutine(out):
            out = await out
        if out is None:
            return []
        items = out if isinstance(out, (list, tuple)) else [out]
        result: list[Message] = []
        for item in items:
            if isinstance(item, str):
                item = TextMessage(text=item)
            if not isinstance(item, Message):
                raise RunError(f"function node {spec.name!r} returned {type(item).__name__}, not a Message")
            if not isinstance(item, spec.output_types):  # the annotation validate() checked the edges against
                raise RunError(
                    f"function node {spec.name!r} is annotated to return "
                    f"{' | '.join(t.type_name for t in spec.output_types)}, but returned a {item.type_name}"
                )
            result.append(item)
        return result

    def _complete_turn(
        self, node: _Node, turn: _Turn, outputs: list[Message], status: str, reason: str, usage: Usage
    ) -> None:
        name = node.spec.name
        final: list[Message] = []
        for m in outputs:
            if m.id in self.messages or m.source not in (None, name) or m.run_id not in (None, self.run_id):
                m = m.model_copy(update={"id": _new_id(), "source": name, "run_id": self.run_id})
            elif m.source is None or m.run_id is None:  # a copy: the object returned may be the caller's own
                m = m.model_copy(update={"source": name, "run_id": self.run_id})
            final.append(m)
            self.messages[m.id] = m
            self._log(
                MessageEmitted,
                {
                    "node": name,
                    "turn_id": turn.turn_id,
                    "message": m,
                },
            )
        if self.replay is not None:
            self.replay.check_outputs(turn, final)
        routed: list[tuple[str, Message]] = []
        routing_error = ""
        try:
            for m in final:
                self._last_output = m
                if node.sink:
                    self._last_sink_output = m
                for edge in node.out_edges:
                    if edge.message_type is not None and not isinstance(m, edge.message_type):
                        continue
                    if edge.condition is not None and not _holds(edge, m):
                        continue
                    target = self._nodes[edge.target]
                    if not isinstance(m, target.spec.input_types):
                        raise _Stop(
                            "failed",
                            f"{edge.describe()}: {edge.target!r} accepts "
                            f"{', '.join(t.type_name for t in target.spec.input_types)}, got {m.type_name}",
                        )
                    routed.append((edge.target, m))
        except _Stop as s:  # the turn fails with the reason, logged in its NodeFinished; nothing is routed
            status, reason, routing_error, routed = "failed", s.reason, s.reason, []
        if self._rounds is not None:
            self._end_rounds(turn, final, {t for t, _ in routed})
        self._log(
            NodeFinished,
            {
                "node": name,
                "turn_id": turn.turn_id,
                "status": status,
                "reason": reason,
                "outputs": [m.id for m in final],
                "routed": [[t, m.id] for t, m in routed],
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "duration_s": round(time.perf_counter() - turn.started, 7),
            },
        )
        if status == "completed" and final:
            node.history.append((turn.inputs, final[0]))
        for target, m in routed:
            self._deliver(target, name, m, live=True)
        if routing_error:
            raise _Stop("failed", routing_error)
        if status == "failed":
            self._stop("failed", f"node {name!r} failed: {reason}")

    def _end_turn(self, node: _Node, turn: _Turn, *, adopt: bool = True) -> tuple[_Node, _Turn] | None:
        """Release the node, start what became ready; return a turn for the calling task to run next."""
        node.busy = False
        self._running.pop(turn.turn_id, None)
        if self.replay is not None:
            self.replay.turn_ended(turn.turn_id)
        if node.inbox:
            self._pending[node.spec.name] = None
        # adopt: called by the task that ran ``turn`` (``_run_turn``), so ``turn.task`` is the current task
        self._adopting, self._adopted = turn.task if adopt else None, None
        try:
            self._schedule()
        finally:
            self._adopting = None
        if not self._running:
            self._finish()
        return self._adopted

    def _stop(self, status: str, reason: str) -> None:
        if self._stop_status is not None or self._result is not None:
            return
        self._stop_status, self._stop_reason = status, reason
        if status in _CANCELLING:
            for t in list(self._running.values()):
                if t.task is not None and t.task is not asyncio.current_task():
                    self._cancel(t.task)
        if not self._running:
            self._finish()

    def _finish(self) -> None:
        if self._result is not None:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None  # the handle refers back to this run
        status = self._stop_status or "completed"
        output = self._last_sink_output or self._last_output
        duration = round(time.perf_counter() - self._t0, 7)  # 0.1 us: a shorter log row
        self._log(
            RunFinished,
            {
                "status": status,
                "reason": self._stop_reason,
                "turns": self.turns,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cached_prompt_tokens": self.cached_prompt_tokens,
                "output": output.id if output is not None else None,
                "duration_s": duration,
            },
        )
        self.status = status
        self.store.set_status(self.run_id, status)
        self.store.flush()
        self._unsubscribe()
        self._unsubscribe = _noop  # drop the closure that refers back to this run (see _noop)
        if self._owns_store:
            self.store.close()
        self._result = RunResult(
            run_id=self.run_id,
            workflow=self.workflow.name,
            status=status,
            reason=self._stop_reason,
            output=output,
            messages=list(self.messages.values()),
            turns=self.turns,
            usage=self.usage,
            duration_s=duration,
        )
        if not self._done.done():
            self._done.set_result(self._result)

    # ---- resume -----------------------------------------------------------------------------------
    def _rebuild(self, record: RunRecord) -> list[_Turn]:
        """Re-apply the log to rebuild inboxes, visits, histories; return the in-flight turns."""
        inflight: dict[str, _Turn] = {}
        for ev in record.events:
            if isinstance(ev, RunStarted):
                msg = Message.from_dict(ev.input)
                self.messages[msg.id] = msg
                self._input_id = msg.id
                for e in ev.entries:
                    self._deliver(e, _INPUT, msg, live=False)
            elif isinstance(ev, NodeStarted):
                node = self._nodes[ev.node]
                ids = set(ev.inputs)
                inputs = _consume(node, ids)
                node.visits = ev.visit
                self.turns += 1
                by_id = {m.id: m for m in inputs}
                turn = _Turn(ev.node, ev.visit, [by_id[i] for i in ev.inputs if i in by_id])
                inflight[ev.turn_id] = turn
                if self._rounds is not None:
                    self._start_rounds(node, turn, live=False)
            elif isinstance(ev, ModelCallFinished) and ev.turn_id in inflight:
                inflight[ev.turn_id].responses[ev.index] = ev.response
                self.prompt_tokens += ev.prompt_tokens
                self.completion_tokens += ev.completion_tokens
                self.total_tokens += ev.prompt_tokens + ev.completion_tokens
                self.cached_prompt_tokens += ev.response.usage.cached_prompt_tokens
            elif isinstance(ev, ToolCallFinished) and ev.turn_id in inflight:
                inflight[ev.turn_id].tools[ev.key] = ev.result
            elif isinstance(ev, MessageEmitted):
                self.messages[ev.message.id] = ev.message
            elif isinstance(ev, NodeFinished) and ev.turn_id in inflight:
                turn = inflight.pop(ev.turn_id)
                node = self._nodes[ev.node]
                outs = [self.messages[i] for i in ev.outputs if i in self.messages]
                for m in outs:
                    self._last_output = m
                    if node.sink:
                        self._last_sink_output = m
                if ev.status == "completed" and outs:
                    node.history.append((turn.inputs, outs[0]))
                if self._rounds is not None:
                    self._end_rounds(turn, outs, {t for t, _ in ev.routed})
                for target, mid in ev.routed:
                    self._deliver(target, ev.node, self.messages[mid], live=False)
            elif isinstance(ev, InputDropped) and ev.reason.startswith(_VISIT_BOUND):
                node = self._nodes[ev.node]
                ids = set(ev.messages)
                node.inbox = deque((p, m) for p, m in node.inbox if m.id not in ids)
                if ev.redirected_to is not None:
                    for mid in ev.messages:
                        self._deliver(ev.redirected_to, ev.node, self.messages[mid], live=False)
                if node.any_join and ev.messages and ev.messages[0] != self._input_id:
                    self._fired(node, self._round_of(self.messages[ev.messages[0]], ev.node), live=False)
        for name, node in self._nodes.items():
            if node.inbox:
                self._pending[name] = None
        return list(inflight.values())


def _consume(node: _Node, ids: set[str]) -> list[Message]:
    """Take the messages ``ids`` out of ``node``'s inbox (rebuilding a started turn from the log). They are
    almost always at its front: popped from there, so a long inbox is not rebuilt for every turn."""
    inbox = node.inbox
    taken: list[Message] = []
    while inbox and len(taken) < len(ids) and inbox[0][1].id in ids:
        taken.append(inbox.popleft()[1])
    if len(taken) < len(ids) and inbox:  # the rest are further back: one pass
        rest = [m for _, m in inbox if m.id in ids]
        if rest:
            node.inbox = deque((p, m) for p, m in inbox if m.id not in ids)
            taken.extend(rest)
    return taken


def run_main(go: Callable[[], Coroutine[Any, Any, RunResult]]) -> RunResult:
    """``asyncio.run(go())`` for sync callers (``run_sync``, the CLI), with a main task that returns nothing: on
    Python 3.11 ``asyncio.run`` formats the main task's repr, result included, when it ends (for a big run a
    whole ``RunResult`` with every message)."""
    out: list[RunResult] = []

    async def main() -> None:
        out.append(await go())

    asyncio.run(main())
    return out[0]


def _holds(edge: EdgeSpec, m: Message) -> bool:
    """``edge``'s condition on ``m``; a condition that raises or returns an awaitable fails the turn (``_Stop``)."""
    assert edge.condition is not None
    try:
        ok = edge.condition(m)
    except Exception as e:
        raise _Stop("failed", f"{edge.describe()}: condition raised {type(e).__name__}: {e}") from e
    if type(ok) is bool:
        return ok
    if inspect.isawaitable(ok):
        if inspect.iscoroutine(ok):
            ok.close()  # never awaited: no "coroutine was never awaited" warning
        raise _Stop(
            "failed",
            f"{edge.describe()}: condition returned an awaitable ({type(ok).__name__}); an edge condition must be "
            f"a plain (sync) function returning a bool",
        )
    return bool(ok)


def _noop() -> None:
    """Stands in for a dropped callback. A finished run holds no reference cycle, so reference counting frees
    its whole state (events, messages, turns) at once instead of leaving it to the cyclic garbage collector,
    whose passes over such garbage once cost as much as the runs themselves."""


_RUN_COUNTER = itertools.count()


def _new_run_id() -> str:
    """``YYYYmmdd-HHMMSS-<unique>``: sortable by start time, unique across processes (the random per-process
    prefix of message ids, renewed in forked children, and a counter: one uuid per process, not per run)."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{_Ids.prefix[:10]}{next(_RUN_COUNTER):04x}"


class _Owner:
    """This process, as recorded in RunStarted/RunResumed: its pid is read once (``os.getpid`` is a system call
    here) and again in each forked child."""

    host = socket.gethostname()
    pid = os.getpid()

    @classmethod
    def _forked(cls) -> None:
        cls.pid = os.getpid()


_owner = _Owner()
os.register_at_fork(after_in_child=_Owner._forked)


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), from /proc; ``None`` where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _refuse_if_running(run_id: str, record: RunRecord) -> None:
    """A run whose recorded process (on this host, not this process) is still alive is running, not crashed:
    resuming it would run its turns twice and interleave two writers in its log."""
    if record.owner is None:
        return
    host, pid, since = record.owner
    if host != _owner.host or pid == _owner.pid:
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # gone: crashed or killed
    except PermissionError:
        pass  # alive, another user's
    started = _process_start(pid)
    if started is not None and started > since + 1.0:
        return  # the pid was reused by a process that started after the run did
    raise RunError(
        f"run {run_id!r} is still running in process {pid} on this host; resuming it now would run its turns twice",
        hint="wait for that process to end (or stop it), then resume; force=True (tq resume --force) overrides",
    )


def _check_run_options(
    what: str,
    model: object,
    max_turns: object,
    max_tokens: object,
    deadline_s: object,
    retry: object,
) -> asyncio.AbstractEventLoop:
    """Refuse bad run options before anything starts (a store is opened, a turn runs), each naming the option
    and what it takes; and a call made outside a running event loop. Returns the running loop."""
    loop = _get_running_loop()
    if loop is None:
        raise UserError(
            f"{what}() needs a running asyncio event loop",
            hint="call it from async code (await workflow.run(...)), or use workflow.run_sync(...) from sync code",
        )
    for name, value in (("max_turns", max_turns), ("max_tokens", max_tokens)):
        if value is not None and (type(value) is not int or value < 0):
            raise ConfigError(f"{name} must be a whole number >= 0 or None, got {value!r} ({type(value).__name__})")
    if deadline_s is not None and (
        isinstance(deadline_s, bool) or not isinstance(deadline_s, int | float) or not 0 <= deadline_s < math.inf
    ):
        raise ConfigError(
            f"deadline_s must be a finite number of seconds >= 0 or None, got {deadline_s!r} "
            f"({type(deadline_s).__name__})"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigError(
            f"retry must be a RetryPolicy or None, got {retry!r} ({type(retry).__name__})",
            hint="e.g. retry=RetryPolicy(attempts=5, initial_s=0.5, max_s=8.0)",
        )
    check_chat_model(model, f"{what}()")
    return loop


def start_run(
    workflow: Workflow,
    input: str | Message,
    *,
    store: RunStore | str | None = None,
    model: ChatModel | None = None,
    max_turns: int | None = None,
    max_tokens: int | None = None,
    deadline_s: float | None = None,
    retry: RetryPolicy | None = None,
    run_id: str | None = None,
    replay: ReplaySource | None = None,
    _inline: bool = False,
) -> Run:
    """Validate ``workflow`` and start a run in the running loop. ``store``: a ``RunStore``, a SQLite path, or
    ``None`` for the per-user default SQLite store (``default_store_path()``). See ``Workflow.run`` for the
    budgets."""
    loop = _check_run_options("start_run", model, max_turns, max_tokens, deadline_s, retry)
    workflow.validate()
    rid = run_id or _new_run_id()
    if isinstance(input, str):
        msg: Message = UserInput(text=input, source="user", run_id=rid)
    elif isinstance(input, Message):
        msg = input.model_copy(update={"run_id": rid, "source": input.source or "user"})
    else:
        raise UserError(f"run input must be a str or a Message, got {type(input).__name__}")
    run = Run(
        workflow,
        store=open_store(store),
        model=model,
        max_turns=max_turns,
        max_tokens=max_tokens,
        deadline_s=deadline_s,
        retry=retry,
        run_id=rid,
        replay=replay,
        stream=not _inline,
        loop=loop,
    )
    run._fresh_id = run_id is None
    run._owns_store = not isinstance(store, RunStore)
    run._inline = _inline
    run._begin(msg)
    run._go()
    return run


def start_resume(
    run_id: str,
    workflow: Workflow,
    store: RunStore | str,
    *,
    model: ChatModel | None = None,
    max_turns: int | None = None,
    max_tokens: int | None = None,
    deadline_s: float | None = None,
    retry: RetryPolicy | None = None,
    force: bool = False,
) -> Run:
    """Continue an unfinished run from its log: completed turns are not re-run, in-flight turns run again
    (with their recorded model answers and tool results), then scheduling goes on. Budgets default to the
    recorded ones (the deadline counts from the resume). A run that was stopped (``cancelled``, ``deadline``,
    ``max_turns``, ``max_tokens``) continues the same way, e.g. with a larger budget; a run that ended
    (``completed``, ``failed``) is returned as is (its ``result()`` is the recorded end).

    A run still running in another live process on this host (the one recorded as running it) is refused
    with ``RunError``: it has not crashed. ``force=True`` resumes it anyway."""
    loop = _check_run_options("resume", model, max_turns, max_tokens, deadline_s, retry)
    workflow.validate()
    st = open_store(store)
    try:
        record = RunRecord.load(st, run_id)
        if record.started is None:
            raise RunError(f"run {run_id!r} has no RunStarted event; it cannot be resumed")
        if not force:
            _refuse_if_running(run_id, record)
    except BaseException:
        if st is not store:
            st.close()
        raise
    budgets = record.budgets
    run = Run(
        workflow,
        store=st,
        model=model,
        max_turns=max_turns if max_turns is not None else budgets.get("max_turns"),
        max_tokens=max_tokens if max_tokens is not None else budgets.get("max_tokens"),
        deadline_s=deadline_s if deadline_s is not None else budgets.get("deadline_s"),
        retry=retry,
        run_id=run_id,
        loop=loop,
    )
    run._owns_store = not isinstance(store, RunStore)
    inflight = run._rebuild(record)
    if record.finished is not None and record.finished.status in _ENDED:
        f = record.finished
        run._stop_status, run._stop_reason = f.status, f.reason
        run._result = RunResult(
            run_id=run_id,
            workflow=workflow.name,
            status=f.status,
            reason=f.reason,
            output=run.messages.get(f.output) if f.output else None,
            messages=list(run.messages.values()),
            turns=f.turns,
            usage=Usage(
                prompt_tokens=f.prompt_tokens,
                completion_tokens=f.completion_tokens,
                cached_prompt_tokens=f.cached_prompt_tokens,
            ),
            duration_s=f.duration_s,
        )
        run.status = f.status
        run._unsubscribe()
        if run._owns_store:
            st.close()
        run._done.set_result(run._result)
        return run
    run._emit(
        RunResumed(
            run_id=run_id,
            rerun=[t.turn_id for t in inflight],
            budgets={"max_turns": run.max_turns, "max_tokens": run.max_tokens, "deadline_s": run.deadline_s},
            pid=_owner.pid,
            host=_owner.host,
        )
    )
    if run.deadline_s is not None:
        run._deadline = run._loop.call_later(
            run.deadline_s, run._stop, "deadline", f"deadline of {run.deadline_s:g} s reached"
        )
    for turn in inflight:
        run._launch(run._nodes[turn.node], turn)
    run._schedule()
    if not run._running:
        run._finish()
    return run


async def resume(run_id: str, workflow: Workflow, store: RunStore | str, **options: Any) -> RunResult:
    """Finish a crashed or interrupted run (see ``start_resume``) and return its ``RunResult``."""
    return await start_resume(run_id, workflow, store, **options).result()
