"""Record/replay at the model boundary, through a real SQLite run store and the tiny LocalQwen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tq_agents.errors import ReplayDivergenceError
from tq_agents.models.base import ChatMessage, ChatRequest
from tq_agents.models.replay import EVENT_KIND, RecordingModel, ReplayModel
from tq_agents.store import SQLiteRunStore

from ._scenario import EXECUTED, run_tool_scenario

pytestmark = pytest.mark.timeout(300)


async def test_record_then_replay_agent_run_without_a_model(local_qwen, tmp_path: Path):
    db = tmp_path / "runs.sqlite"
    with SQLiteRunStore(db) as store:
        rec = RecordingModel(local_qwen, store, "run-1")
        recorded = await run_tool_scenario(rec, ["add 4 and 5", "shout yo"])
        store.flush()
    recorded_calls = list(EXECUTED)
    with SQLiteRunStore(db) as store:  # a fresh process would see the same file
        events = [e for e in store.load_events("run-1") if e.kind == EVENT_KIND]
        assert len(events) == len(recorded.responses)
        first = events[0].payload
        assert first["prompt_text"].startswith("<|im_start|>system") and first["prompt_tokens"]
        assert first["grammar"] and "<[151657]>" in first["grammar"] and len(first["grammar_sha256"]) == 64
        assert first["model"]["revision"] == local_qwen.revision and first["model"]["backend"] == "LocalQwen"
        assert first["sampling"]["tool_choice"] == "required"
        replay = ReplayModel(store, "run-1")
        replayed = await run_tool_scenario(replay, ["add 4 and 5", "shout yo"])
        assert [r.model_dump() for r in replayed.responses] == [r.model_dump() for r in recorded.responses]
        assert EXECUTED == recorded_calls and replay.remaining() == 0 and replay.divergence is None


async def test_replay_reports_the_first_differing_request(local_qwen, tmp_path: Path):
    with SQLiteRunStore(tmp_path / "r.sqlite") as store:
        rec = RecordingModel(local_qwen, store, "run-2")
        reqs = [
            ChatRequest(messages=[ChatMessage(role="user", content=f"q{i}")], max_tokens=6, agent="a") for i in range(3)
        ]
        for r in reqs:
            await rec.complete(r)
        replay = ReplayModel(store, "run-2")
        assert (await replay.complete(reqs[0])).raw_text is not None
        changed = reqs[1].model_copy(update={"messages": [ChatMessage(role="user", content="other")]})
        with pytest.raises(
            ReplayDivergenceError, match=r"request #2 from agent 'a' .* at request\.messages\[0\]\.content"
        ):
            await replay.complete(changed)
        assert 'recorded "q1"' in replay.divergence or "recorded q1" in replay.divergence
        other_agent = reqs[1].model_copy(update={"agent": "b"})
        with pytest.raises(ReplayDivergenceError, match="no recorded counterpart"):
            await replay.complete(other_agent)
