"""Run options are checked before a run starts; a function node's return annotation holds at run time; a
commit made in a worker thread wakes the run's event stream on its own loop."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tq_agents import Agent, ConfigError, Review, SQLiteRunStore, TextMessage, UserError, UserInput, Workflow, tool
from tq_agents.agent import RetryPolicy
from tq_agents.scheduler import start_resume, start_run
from tq_agents.store import MemoryRunStore
from tq_agents.testing import ScriptedModel, call

pytestmark = pytest.mark.timeout(60)


def _wf() -> Workflow:
    return Workflow("one").add_node("F", lambda m: TextMessage(text="ok"))


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("max_turns", "5", "max_turns must be a whole number >= 0 or None, got '5' (str)"),
        ("max_turns", -1, "max_turns must be a whole number >= 0 or None, got -1 (int)"),
        ("max_turns", True, "max_turns must be a whole number >= 0 or None, got True (bool)"),
        ("max_tokens", 2.5, "max_tokens must be a whole number >= 0 or None, got 2.5 (float)"),
        ("deadline_s", "10", "deadline_s must be a finite number of seconds >= 0 or None, got '10' (str)"),
        ("deadline_s", -5, "deadline_s must be a finite number of seconds >= 0 or None, got -5 (int)"),
        ("deadline_s", float("nan"), "deadline_s must be a finite number"),
        ("deadline_s", float("inf"), "deadline_s must be a finite number"),
        ("retry", 3, "retry must be a RetryPolicy or None, got 3 (int)"),
        ("model", "qwen-7b", "an async complete(request) method), got"),
    ],
)
def test_bad_run_options_are_refused_before_the_run_starts(
    tmp_path: Path, option: str, value: Any, needle: str
) -> None:
    path = tmp_path / "runs.sqlite"
    with pytest.raises(ConfigError) as e:
        _wf().run_sync("go", store=str(path), **{option: value})
    assert needle in str(e.value)
    assert not path.exists()  # nothing was opened or written


def test_good_run_options_still_run() -> None:
    res = _wf().run_sync(
        "go", store=MemoryRunStore(), max_turns=3, max_tokens=1000, deadline_s=5, retry=RetryPolicy(attempts=2)
    )
    assert res.status == "completed"


def test_resume_checks_its_options_too(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = _wf().run_sync("go", store=store)

    async def main() -> None:
        start_resume(res.run_id, _wf(), store, max_turns=-3)

    with pytest.raises(ConfigError, match="max_turns must be a whole number"):
        asyncio.run(main())


def test_start_run_outside_an_event_loop_says_what_to_do() -> None:
    with pytest.raises(UserError) as e:
        start_run(_wf(), "go", store=MemoryRunStore())
    assert "needs a running asyncio event loop" in str(e.value) and "run_sync" in str(e.value.hint)


def test_a_function_node_that_breaks_its_return_annotation_fails_the_run() -> None:
    reached: list[str] = []

    def wrong(m: UserInput) -> Review:
        return TextMessage(text="not a review")  # type: ignore[return-value]

    def reviewed(m: Review) -> TextMessage:
        reached.append("g")
        return TextMessage(text="reviewed")

    wf = Workflow("w").add_node("f", wrong).add_node("g", reviewed).add_edge("f", "g", message_type=Review)
    assert wf.problems() == []
    res = wf.run_sync("x", store=MemoryRunStore())
    assert res.status == "failed" and reached == []
    assert "function node 'f' is annotated to return Review, but returned a TextMessage" in res.reason


def test_a_commit_in_a_worker_thread_wakes_the_event_stream_on_its_loop(tmp_path: Path) -> None:
    # a sync tool runs in a worker thread; its own append commits there (no loop in that thread), and the
    # durability callback must reach the run's loop through call_soon_threadsafe (asyncio debug mode refuses
    # a future resolved from another thread, which left the stream waiting for ever)
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    run_ids: list[str] = []
    threads: list[str] = []

    @tool
    def log_it(x: int) -> str:
        """Log a value.

        Args:
            x: The value.
        """
        time.sleep(0.05)  # the loop's commit timer has fired meanwhile: this append commits in this thread
        threads.append(threading.current_thread().name)
        return f"logged {store.append(run_ids[0], 'backend.tool_log', {'x': x})}"

    model = ScriptedModel(default=lambda r: "done" if r.messages[-1].role == "tool" else call("log_it", x=1))
    wf = Workflow("t", model=model).add_node(Agent("a", "Do.", tools=[log_it]))

    async def main() -> tuple[list[str], str]:
        run = wf.start("go", store=store)
        run_ids.append(run.run_id)
        kinds = [ev.kind async for ev in run.events()]
        return kinds, (await run.result()).status

    kinds, status = asyncio.run(asyncio.wait_for(main(), 20), debug=True)
    assert status == "completed" and kinds[-1] == "RunFinished"
    assert threads and threads[0] != threading.main_thread().name
    assert [e.kind for e in store.load_events(run_ids[0])].count("backend.tool_log") == 1


def test_run_sync_does_not_format_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.11's asyncio.run formats its main task's repr (result included) as it ends: for a big run that
    # was a repr of every message, which run_sync now avoids
    from tq_agents.scheduler import RunResult

    formatted: list[str] = []

    def counting(self: RunResult) -> str:  # (asyncio formats through reprlib, which swallows errors: count)
        formatted.append(self.run_id)
        return "RunResult(...)"

    monkeypatch.setattr(RunResult, "__repr__", counting)
    assert _wf().run_sync("go", store=MemoryRunStore()).status == "completed"
    assert formatted == []
