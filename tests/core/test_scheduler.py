"""Scheduler behaviour with ScriptedModel: joins, loops, budgets, cancellation, retries, streaming, failures."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from tq_agents import (
    Agent,
    InputDropped,
    Message,
    ModelCallFailed,
    NodeFinished,
    NodeStarted,
    Review,
    RunFinished,
    SQLiteRunStore,
    TextMessage,
    TransientModelError,
    UserError,
    Workflow,
)
from tq_agents.agent import RetryPolicy
from tq_agents.models.base import ChatRequest, ChatResponse
from tq_agents.testing import ScriptedModel

pytestmark = pytest.mark.timeout(60)


def echo(req: ChatRequest) -> str:
    return f"{req.agent}<{req.messages[-1].content}>"


def chain(model: ScriptedModel, names: str = "ABCD") -> Workflow:
    wf = Workflow("chain", model=model)
    for n in names:
        wf.add_node(Agent(n, f"You are {n}."))
    for a, b in itertools.pairwise(names):
        wf.add_edge(a, b)
    return wf


def test_chain_runs_in_order_and_passes_messages() -> None:
    model = ScriptedModel(default=echo)
    res = chain(model).run_sync("go")
    assert res.status == "completed" and res.ok and res.turns == 4
    assert isinstance(res.output, TextMessage)
    assert res.output.text == "D<C<B<A<go>>>>"
    assert res.output.source == "D" and res.output.run_id == res.run_id
    assert [r.agent for r in model.requests] == list("ABCD")
    assert res.usage.total_tokens > 0


def fan(join: str, latency: dict[str, float] | None = None) -> tuple[Workflow, ScriptedModel]:
    model = ScriptedModel(default=echo, latency=latency or {})
    wf = Workflow("fan", model=model)
    for n in "ABC":
        wf.add_node(Agent(n))
    wf.add_node(Agent("D"), join=join)  # type: ignore[arg-type]
    wf.add_edge("A", "B").add_edge("A", "C").add_edge("B", "D").add_edge("C", "D")
    return wf, model


def test_fan_out_reaches_model_concurrently_and_all_join_waits_for_both() -> None:
    in_flight = 0
    peak = 0

    class Barrier(ScriptedModel):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            return await super().complete(request)

    model = Barrier(default=echo)
    wf = Workflow("fan", model=model)
    for n in "ABCD":
        wf.add_node(Agent(n))
    wf.add_edge("A", "B").add_edge("A", "C").add_edge("B", "D").add_edge("C", "D")
    res = wf.run_sync("x")
    assert res.status == "completed" and res.turns == 4
    assert peak == 2  # B and C were at the model at the same time
    d_prompt = model.requests[-1].messages[-1].content
    assert "[B]\nB<A<x>>" in d_prompt and "[C]\nC<A<x>>" in d_prompt  # D got one message from each


def test_any_join_fires_at_first_arrival_before_slow_branch_ends() -> None:
    wf, model = fan("any", latency={"C": 0.6})

    async def go() -> tuple[object, list[object]]:
        run = wf.start("x")
        evs = [ev async for ev in run.events()]
        return await run.result(), evs

    res, evs = asyncio.run(go())
    assert res.status == "completed"  # type: ignore[attr-defined]
    d_start = next(e for e in evs if isinstance(e, NodeStarted) and e.node == "D")
    c_end = next(e for e in evs if isinstance(e, NodeFinished) and e.node == "C")
    assert d_start.ts < c_end.ts - 0.3  # D started while C was still running
    assert [e.node for e in evs if isinstance(e, NodeStarted)].count("D") == 1  # not fired again
    dropped = [e for e in evs if isinstance(e, InputDropped)]
    assert len(dropped) == 1 and dropped[0].node == "D" and "late arrival from 'C'" in dropped[0].reason
    assert [r.agent for r in model.requests if r.agent == "D"] == ["D"]
    d_request = next(r for r in model.requests if r.agent == "D")
    assert d_request.messages[-1].content == "B<A<x>>"


def review_loop(verdicts: list[str], max_visits: int = 3) -> tuple[Workflow, ScriptedModel]:
    model = ScriptedModel(
        {
            "coder": [f"code v{i}" for i in range(1, 10)],
            "reviewer": [{"verdict": v, "suggested_fix": "more"} for v in verdicts],
        }
    )

    def report(r: Review | TextMessage) -> TextMessage:
        return TextMessage(text=f"report: {getattr(r, 'verdict', 'exhausted')}")

    wf = (
        Workflow("review", model=model)
        .add_node(Agent("coder"), max_visits=max_visits, on_exhausted="report")
        .add_node(Agent("reviewer", output_type=Review))
        .add_node("report", report, join="any")
        .add_edge("coder", "reviewer")
        .add_edge("reviewer", "coder", condition=lambda r: r.verdict == "revise")
        .add_edge("reviewer", "report", condition=lambda r: r.verdict == "approve")
        .set_entry("coder")
    )
    return wf, model


def test_review_loop_revises_then_approves() -> None:
    wf, model = review_loop(["revise", "approve"])
    res = wf.run_sync("write add()")
    assert res.status == "completed"
    assert res.output.text == "report: approve"  # type: ignore[union-attr]
    assert [r.agent for r in model.requests] == ["coder", "reviewer", "coder", "reviewer"]
    # the coder's second turn sees its first answer and the review (its own history)
    second = model.requests[2].messages
    assert [m.role for m in second] == ["user", "assistant", "user"]
    assert second[1].content == "code v1" and '"verdict": "revise"' in second[2].content


def test_review_loop_is_bounded_by_max_visits() -> None:
    wf, model = review_loop(["revise"] * 10, max_visits=2)
    res = wf.run_sync("write add()")
    assert res.status == "completed"
    assert res.output.text == "report: revise"  # type: ignore[union-attr]  # redirected on exhaustion
    assert [r.agent for r in model.requests].count("coder") == 2
    assert res.turns == 5  # coder, reviewer, coder, reviewer, report


def test_max_turns_budget() -> None:
    res = chain(ScriptedModel(default=echo)).run_sync("go", max_turns=2)
    assert res.status == "max_turns" and res.turns == 2
    assert "turn budget of 2" in res.reason
    assert res.output.text == "B<A<go>>"  # type: ignore[union-attr]


def test_max_tokens_budget() -> None:
    model = ScriptedModel(default=lambda r: "x" * 400)  # ~100 completion tokens per call
    res = chain(model).run_sync("go", max_tokens=150)
    assert res.status == "max_tokens"
    assert res.usage.total_tokens >= 150
    assert len(model.requests) == 2 and res.turns <= 3


def test_deadline_budget() -> None:
    model = ScriptedModel(default=echo, latency={"B": 30.0})
    t0 = time.perf_counter()
    res = chain(model).run_sync("go", deadline_s=0.3)
    assert res.status == "deadline" and "deadline of 0.3 s" in res.reason
    assert time.perf_counter() - t0 < 5
    assert res.turns == 2


def test_cancellation() -> None:
    model = ScriptedModel(default=echo, latency={"C": 30.0})

    async def go() -> tuple[object, list[object]]:
        run = chain(model).start("go")
        evs = []
        async for ev in run.events():
            evs.append(ev)
            if isinstance(ev, NodeStarted) and ev.node == "C":
                run.cancel("user pressed ctrl-c")
        return await run.result(), evs

    res, evs = asyncio.run(go())
    assert res.status == "cancelled" and res.reason == "user pressed ctrl-c"  # type: ignore[attr-defined]
    assert isinstance(evs[-1], RunFinished) and evs[-1].status == "cancelled"
    assert not any(isinstance(e, NodeFinished) and e.node == "C" for e in evs)


def test_transient_model_errors_are_retried() -> None:
    model = ScriptedModel({"A": [TransientModelError("429 slow down"), "ok"]}, default=echo)

    async def go() -> tuple[object, list[object]]:
        run = chain(model, "AB").start("go", retry=RetryPolicy(attempts=3, initial_s=0.01, max_s=0.02))
        return await run.result(), [e async for e in run.events()]

    res, evs = asyncio.run(go())
    assert res.status == "completed"  # type: ignore[attr-defined]
    failed = [e for e in evs if isinstance(e, ModelCallFailed)]
    assert len(failed) == 1 and failed[0].will_retry and "429 slow down" in failed[0].error


def test_failed_turn_fails_the_run_with_a_clear_reason() -> None:
    model = ScriptedModel({"A": ["not json"] * 5})
    wf = Workflow("f", model=model).add_node(Agent("A", output_type=Review, max_output_retries=1))
    res = wf.run_sync("go")
    assert res.status == "failed"
    assert res.reason.startswith("node 'A' failed: agent 'A' gave no usable `Review` after 2 attempt(s)")
    model2 = ScriptedModel({"A": [TransientModelError("503")] * 5})
    res2 = Workflow("f", model=model2).add_node(Agent("A")).run_sync("go", retry=RetryPolicy(2, 0.01, 0.01))
    assert res2.status == "failed" and "TransientModelError: 503" in res2.reason


def test_function_nodes_sync_async_and_lists() -> None:
    def split(m: TextMessage) -> list[TextMessage]:
        return [TextMessage(text=w) for w in m.text.split()]

    async def upper(m: TextMessage) -> TextMessage:
        await asyncio.sleep(0)
        return TextMessage(text=m.text.upper())

    def join(ms: list[Message]) -> str:
        return "+".join(sorted(m.text for m in ms))  # type: ignore[attr-defined]

    wf = (
        Workflow("fn")
        .add_node("split", split)
        .add_node("upper", upper)
        .add_node("join", join, join="any")
        .add_edge("split", "upper")
        .add_edge("upper", "join")
    )
    res = wf.run_sync("a b c")
    assert res.status == "completed"
    outs = [m.text for m in res.messages if m.source == "join"]  # type: ignore[attr-defined]
    assert outs == ["A", "B", "C"]  # one turn per message, in order
    assert res.turns == 7


def test_function_node_exception_fails_run() -> None:
    def boom(m: TextMessage) -> TextMessage:
        raise ValueError("bad input")

    res = Workflow("x").add_node("boom", boom).run_sync("go")
    assert res.status == "failed" and res.reason == "node 'boom' failed: ValueError: bad input"


def test_agent_without_model_is_a_user_error() -> None:
    wf = Workflow("x").add_node(Agent("a"))
    with pytest.raises(UserError, match="agent 'a' has no model"):
        wf.run_sync("go")


def test_stream_delivers_events_only_once_durable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "runs.sqlite"
    store = SQLiteRunStore(path, commit_interval_s=0.01)
    reader = SQLiteRunStore(path)
    wf = chain(ScriptedModel(default=echo))

    async def go() -> list[tuple[int, int]]:
        run = wf.start("go", store=store)
        seen = []
        async for ev in run.events():
            on_disk = reader.load_events(run.run_id)  # a second connection: only committed rows
            seen.append((ev.seq, on_disk[-1].seq if on_disk else 0))
        await run.result()
        return seen

    seen = asyncio.run(go())
    assert [s for s, _ in seen] == list(range(1, len(seen) + 1))
    assert all(durable >= seq for seq, durable in seen)
    assert len(seen) == 18  # RunStarted, 4 x (NodeStarted, ModelCallFinished, MessageEmitted, NodeFinished), end


def test_store_given_as_path_is_written_and_closed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "runs.sqlite"
    res = chain(ScriptedModel(default=echo)).run_sync("go", store=str(path))
    reopened = SQLiteRunStore(path)
    info = reopened.get_run(res.run_id)
    assert info.status == "completed" and info.workflow == "chain" and info.meta == {"input": "go"}
    kinds = [e.kind for e in reopened.load_events(res.run_id)]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and kinds.count("NodeFinished") == 4


def test_cancel_right_after_start() -> None:
    async def go() -> object:
        run = chain(ScriptedModel(default=echo)).start("go")
        run.cancel()
        return await asyncio.wait_for(run.result(), 5)

    res = asyncio.run(go())
    assert res.status == "cancelled"  # type: ignore[attr-defined]
    assert res.turns == 1  # type: ignore[attr-defined]  # A had been started (and is resumable)


def test_broken_store_ends_run_with_failed_status() -> None:
    from tq_agents import MemoryRunStore, StoreError

    class Broken(MemoryRunStore):
        def append_json(self, run_id: str, kind: str, data: str, ts: float) -> int:  # what the scheduler calls
            if kind == "MessageEmitted":
                raise StoreError("disk full")
            return super().append_json(run_id, kind, data, ts)

    async def go() -> object:
        return await asyncio.wait_for(chain(ScriptedModel(default=echo)).run("go", store=Broken()), 5)

    res = asyncio.run(go())
    assert res.status == "failed" and res.reason == "internal error: StoreError: disk full"  # type: ignore[attr-defined]


def test_cancelling_the_awaiting_task_cancels_the_run() -> None:
    """``await wf.run()`` runs its first turn in the awaiting task: cancelling that task ends the run as
    ``cancelled`` in the log and raises ``CancelledError`` to the caller (no run left going unobserved)."""
    from tq_agents import MemoryRunStore

    store = MemoryRunStore()

    async def go() -> None:
        wf = chain(ScriptedModel(default=echo, latency=0.5))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wf.run("go", store=store), 0.1)

    asyncio.run(go())
    [info] = store.list_runs()
    assert info.status == "cancelled"
    kinds = [e.kind for e in store.load_events(info.run_id)]
    assert kinds[0] == "RunStarted" and kinds[-1] == "RunFinished" and "NodeFinished" not in kinds


def test_deadline_inside_the_inline_turn_returns_a_status() -> None:
    """The deadline cancels the inline turn (the caller's own task); the caller gets a result, not an error,
    and its task is not left marked as cancelled."""

    async def go() -> tuple[object, int]:
        wf = chain(ScriptedModel(default=echo, latency=0.3))
        res = await wf.run("go", deadline_s=0.05)
        task = asyncio.current_task()
        assert task is not None
        await asyncio.sleep(0)  # would raise if a stale cancel were pending
        return res, task.cancelling()

    res, cancelling = asyncio.run(go())
    assert res.status == "deadline" and res.turns == 1  # type: ignore[attr-defined]
    assert cancelling == 0


def test_logged_events_load_back_equal_to_the_streamed_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the store keeps compact payloads (a response without its default fields, a message without the run id
    # it shares with its event): loading them back must give the very events the stream handed out
    from tq_agents._record import RunRecord
    from tq_agents.models.base import ChatMessage

    def answer(req: ChatRequest) -> ChatResponse:
        if req.agent == "B":  # a response with non-default fields everywhere
            msg = ChatMessage(role="assistant", content="B done", reasoning_content="thinking", name="b")
            return ChatResponse(message=msg, finish_reason="length", model="m", raw_text="<raw>")
        return ChatResponse(message=ChatMessage(role="assistant", content=f"{req.agent} ok", tool_calls=[]))

    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    wf = chain(ScriptedModel(default=answer), "AB")

    async def go() -> list:  # type: ignore[type-arg]
        run = wf.start("go", store=store)
        evs = [ev async for ev in run.events()]
        await run.result()
        return evs

    streamed = asyncio.run(go())
    loaded = RunRecord.load(SQLiteRunStore(tmp_path / "runs.sqlite"), streamed[0].run_id).events
    assert [e.kind for e in loaded] == [e.kind for e in streamed]
    for a, b in zip(streamed, loaded, strict=True):
        assert a.to_dict() == b.to_dict()
    b_call = [e for e in loaded if e.kind == "ModelCallFinished"][1]
    assert b_call.response.message.reasoning_content == "thinking" and b_call.response.raw_text == "<raw>"


def test_run_without_stream_logs_the_same_payloads_as_a_streamed_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Workflow.run encodes payloads straight from their fields (no event objects); the log must be what a
    # streamed run (event objects) writes, up to ids, times and durations
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    wf = chain(ScriptedModel(default=echo), "ABC")

    async def streamed() -> str:
        run = wf.start("go", store=store)
        _ = [ev async for ev in run.events()]
        return (await run.result()).run_id

    plain_id = wf.run_sync("go", store=store).run_id
    streamed_id = asyncio.run(streamed())

    def shape(run_id: str) -> list:  # type: ignore[type-arg]
        out = []
        for ev in store.load_events(run_id):
            p = {k: v for k, v in ev.payload.items() if k not in ("duration_s", "tokens_per_s", "inputs", "outputs")}
            p.pop("routed", None)
            if "message" in p:
                p["message"] = {k: v for k, v in p["message"].items() if k not in ("id", "created_at")}
            if "input" in p:
                p["input"] = p["input"]["text"]
            p.pop("output", None)
            out.append((ev.kind, sorted(ev.payload), p))
        return out

    assert shape(plain_id) == shape(streamed_id)
    assert len(shape(plain_id)) == 1 + 3 * 4 + 1


def test_cancelled_run_resumes_from_the_cancelled_turn() -> None:
    from tq_agents import MemoryRunStore, resume

    store = MemoryRunStore()

    async def go() -> object:
        run = chain(ScriptedModel(default=echo, latency={"C": 30.0})).start("go", store=store)
        async for ev in run.events():
            if isinstance(ev, NodeStarted) and ev.node == "C":
                run.cancel("user pressed ctrl-c")
        return await run.result()

    first = asyncio.run(go())
    assert first.status == "cancelled"  # type: ignore[attr-defined]
    model = ScriptedModel(default=echo)
    res = asyncio.run(resume(first.run_id, chain(model), store))  # type: ignore[attr-defined]
    assert res.status == "completed" and res.output.text == "D<C<B<A<go>>>>"  # type: ignore[union-attr]
    assert [r.agent for r in model.requests] == ["C", "D"]  # A and B are not run again
    assert res.turns == 4 and store.get_run(res.run_id).status == "completed"


def test_run_stopped_by_a_budget_continues_with_a_larger_one() -> None:
    from tq_agents import MemoryRunStore, resume

    store = MemoryRunStore()
    first = chain(ScriptedModel(default=echo)).run_sync("go", store=store, max_turns=2)
    assert first.status == "max_turns"
    again = asyncio.run(resume(first.run_id, chain(ScriptedModel(default=echo)), store))
    assert again.status == "max_turns"  # the recorded budget is still the default
    model = ScriptedModel(default=echo)
    res = asyncio.run(resume(first.run_id, chain(model), store, max_turns=10))
    assert res.status == "completed" and res.output.text == "D<C<B<A<go>>>>"  # type: ignore[union-attr]
    assert [r.agent for r in model.requests] == ["C", "D"]
    failed = Workflow("f", model=ScriptedModel({"A": ["not json"]})).add_node(
        Agent("A", output_type=Review, max_output_retries=0)
    )
    ended = failed.run_sync("go", store=store)
    assert ended.status == "failed"
    assert asyncio.run(resume(ended.run_id, failed, store)).status == "failed"  # an ended run is returned as is


def test_budget_is_not_spent_on_inputs_a_visit_bound_drops() -> None:
    # a run that needs exactly max_turns turns completes, even when an input is then dropped by a visit bound
    def step(m: TextMessage) -> TextMessage:
        return TextMessage(text=m.text + "+")

    wf = (
        Workflow("loop")
        .add_node("a", step, max_visits=2)
        .add_node("b", step)
        .add_edge("a", "b")
        .add_edge("b", "a", condition=lambda m: True)
        .set_entry("a")
    )
    free = wf.run_sync("go")
    assert free.status == "completed" and free.turns == 4
    res = wf.run_sync("go", max_turns=4)
    assert res.status == "completed" and res.turns == 4 and res.output.text == free.output.text  # type: ignore[union-attr]
    assert wf.run_sync("go", max_turns=3).status == "max_turns"


def test_retries_in_a_workflow_wait_like_the_retry_policy() -> None:
    class Timed(ScriptedModel):
        def __init__(self, *a: object, **k: object) -> None:
            super().__init__(*a, **k)  # type: ignore[arg-type]
            self.times: list[float] = []

        async def complete(self, request: ChatRequest) -> ChatResponse:
            self.times.append(time.perf_counter())
            return await super().complete(request)

    model = Timed({"A": [TransientModelError("429"), TransientModelError("429"), "ok"]})
    res = chain(model, "A").run_sync("go", retry=RetryPolicy(attempts=3, initial_s=0.2, max_s=8))
    assert res.status == "completed"
    gaps = [b - a for a, b in itertools.pairwise(model.times)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39  # 0.2 then 0.4 s: the first retry waits too


def test_any_join_entry_takes_the_input_and_then_one_message_per_round() -> None:
    # the run input is not a round of the join: the first predecessor's message still fires it, the other's is late
    seen: list[str] = []

    def a(m: TextMessage) -> TextMessage:
        return TextMessage(text="a:" + m.text)

    def b(m: TextMessage) -> TextMessage:
        return TextMessage(text="b:" + m.text)

    def j(m: TextMessage) -> TextMessage:
        seen.append(m.text)
        return TextMessage(text="j:" + m.text)

    wf = (
        Workflow("w")
        .add_node("a", a)
        .add_node("b", b)
        .add_node("j", j, join="any", max_visits=3)
        .add_edge("a", "j")
        .add_edge("b", "j")
        .set_entry("a", "b", "j")
    )
    res = wf.run_sync("go", store=":memory:")
    assert res.status == "completed" and seen == ["go", "a:go"]
