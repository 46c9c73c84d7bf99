"""Record/replay beyond one session of one agent: a recorded workflow replayed in a new run, recorded errors
replayed as their own type (a transient error is retried again), several recording sessions in one run, and
requests the backend refuses in ``prepare`` — through real SQLite stores and the tiny LocalQwen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tq_agents import Agent, Workflow
from tq_agents.agent import RetryPolicy, TurnContext
from tq_agents.errors import ModelError, ModelRequestError, ReplayDivergenceError, TransientModelError
from tq_agents.models.base import ChatMessage, ChatRequest
from tq_agents.models.replay import EVENT_KIND, RecordingModel, ReplayModel
from tq_agents.store import SQLiteRunStore
from tq_agents.testing import ScriptedModel

pytestmark = pytest.mark.timeout(300)


def _calls(store: SQLiteRunStore, run_id: str) -> list[dict]:
    return [e.payload for e in store.load_events(run_id) if e.kind == EVENT_KIND]


def _workflow(model) -> Workflow:
    return Workflow("wf", model=model).add_node(Agent("writer", "Write one line.", max_tokens=48))


async def test_a_recorded_workflow_replays_in_a_new_run(local_qwen, tmp_path: Path):
    with SQLiteRunStore(tmp_path / "model.sqlite") as models, SQLiteRunStore(tmp_path / "runs.sqlite") as runs:
        first = await _workflow(RecordingModel(local_qwen, models, "rec")).run("go", store=runs)
        assert first.status == "completed"
        recorded = _calls(models, "rec")
        assert recorded[0]["request"]["metadata"]["run_id"] == first.run_id  # the scheduler's metadata is kept
        replay = ReplayModel(models, "rec")
        second = await _workflow(replay).run("go", store=runs)
        assert second.run_id != first.run_id
        assert second.status == "completed", second.reason
        assert second.output.text == first.output.text
        assert replay.divergence is None and replay.remaining() == 0

        # everything else in the request, the rest of its metadata included, is still compared
        replay = ReplayModel(models, "rec")
        req = ChatRequest.model_validate(recorded[0]["request"])
        changed = req.model_copy(update={"metadata": {**req.metadata, "run_id": "other", "tenant": "b"}})
        with pytest.raises(ReplayDivergenceError, match=r"at request\.metadata\.tenant"):
            await replay.complete(changed)


async def test_a_recorded_transient_error_is_replayed_as_one_and_retried(tmp_path: Path):
    ctx = TurnContext(RetryPolicy(attempts=3, initial_s=0.01, max_s=0.01))
    agent = Agent("writer", "Write a line.")
    with SQLiteRunStore(tmp_path / "r.sqlite") as store:
        inner = ScriptedModel({"writer": [TransientModelError("429 rate limited"), "hello"]})
        rec = RecordingModel(inner, store, "run")
        assert (await agent.run("go", model=rec, context=ctx)).text == "hello"
        calls = _calls(store, "run")
        assert [c.get("error", {}).get("type") for c in calls] == ["TransientModelError", None]

        replay = ReplayModel(store, "run")  # retried on replay exactly as while recording
        assert (await agent.run("go", model=replay, context=ctx)).text == "hello"
        assert replay.remaining() == 0 and replay.divergence is None

        replay = ReplayModel(store, "run")
        with pytest.raises(TransientModelError, match=r"\(replayed\) 429 rate limited"):
            await replay.complete(ChatRequest.model_validate(calls[0]["request"]))


async def test_an_error_type_outside_tq_agents_is_replayed_as_a_model_error(tmp_path: Path):
    class QuotaError(ModelError):
        pass

    with SQLiteRunStore(tmp_path / "r.sqlite") as store:
        rec = RecordingModel(ScriptedModel({"a": [QuotaError("quota used up")]}), store, "run")
        req = ChatRequest(messages=[ChatMessage(role="user", content="hi")], agent="a")
        with pytest.raises(QuotaError):
            await rec.complete(req)
        with pytest.raises(ModelError, match=r"\(replayed\) QuotaError: quota used up") as info:
            await ReplayModel(store, "run").complete(req)
        assert type(info.value) is ModelError


async def test_recording_sessions_appended_to_one_run_replay_in_recorded_order(local_qwen, tmp_path: Path):
    db = tmp_path / "append.sqlite"
    reqs = [
        ChatRequest(messages=[ChatMessage(role="user", content=f"q{i}")], max_tokens=4, agent="a") for i in range(4)
    ]
    answers = []
    for session in (reqs[:2], reqs[2:]):  # two processes recording into the same run, one after the other
        with SQLiteRunStore(db) as store:
            rec = RecordingModel(local_qwen, store, "run")
            answers += [(await rec.complete(r)).raw_text for r in session]
    with SQLiteRunStore(db) as store:
        calls = _calls(store, "run")
        assert [c["index"] for c in calls] == [0, 1, 2, 3]
        assert [c["request"]["messages"][0]["content"] for c in calls] == ["q0", "q1", "q2", "q3"]
        replay = ReplayModel(store, "run")
        assert [(await replay.complete(r)).raw_text for r in reqs] == answers
        assert replay.divergence is None and replay.remaining() == 0

        # records of earlier versions restart the index in each session: still replayed session by session
        store.create_run("legacy", workflow="model-record")
        for call, index in zip(calls, [0, 1, 0, 1], strict=True):
            store.append("legacy", EVENT_KIND, {**call, "index": index})
        replay = ReplayModel(store, "legacy")
        assert [(await replay.complete(r)).raw_text for r in reqs] == answers


async def test_a_request_refused_by_prepare_is_recorded_and_replayed(local_qwen, tmp_path: Path):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {}}}}]
    ok = ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=4, agent="a")
    bad = ChatRequest(messages=[ChatMessage(role="user", content="hi")], tools=tools, tool_choice="sub", agent="a")
    with SQLiteRunStore(tmp_path / "r.sqlite") as store:
        rec = RecordingModel(local_qwen, store, "run")
        await rec.complete(ok)
        with pytest.raises(ModelRequestError, match="tool_choice 'sub'") as recorded:
            await rec.complete(bad)
        await rec.complete(ok)
        calls = _calls(store, "run")
        assert len(calls) == 3 and calls[1]["error"]["type"] == "ModelRequestError"
        assert calls[1]["prompt_text"] is None and calls[1]["grammar"] is None
        assert calls[2]["prompt_text"].startswith("<|im_start|>")

        replay = ReplayModel(store, "run")
        await replay.complete(ok)
        with pytest.raises(ModelRequestError) as replayed:
            await replay.complete(bad)
        assert replayed.value.message == f"(replayed) {recorded.value.message}"
        assert replayed.value.hint == recorded.value.hint
        await replay.complete(ok)
        assert replay.divergence is None and replay.remaining() == 0
