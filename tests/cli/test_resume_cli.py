"""`tq resume` continues a budget-stopped run with a larger budget, says so when a run had already ended, and
every "continue with" hint names the store it needs; an unknown workflow is reported before any model."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

CHAIN = textwrap.dedent(
    """
    from tq_agents import Agent, Workflow
    from tq_agents.workflows import workflow

    @workflow("pair", description="Two agents in a row.")
    def pair(model):
        return Workflow("pair", model=model).add_node(Agent("a", "A.")).add_node(Agent("b", "B.")).add_edge("a", "b")
    """
)


def test_a_budget_stopped_run_continues_with_a_larger_budget(tq) -> None:  # type: ignore[no-untyped-def]
    wf = tq.tmp / "pair.py"
    wf.write_text(CHAIN)
    other = tq.tmp / "other.sqlite"
    model = tq.script("pair", {"a": ["from a"], "b": ["from b"]})
    stopped = tq(
        "run", "pair", "--file", str(wf), "--input", "go", "--model", model, "--store", str(other), "--max-turns", "1"
    )
    assert stopped.returncode == 1 and "status max_turns" in stopped.stdout
    run_id = stopped.stdout.split(" · run ")[1].split()[0]
    # the footer says how to continue, with the store it needs (not the default one)
    assert f"tq resume {run_id} --store {other} --max-turns N" in " ".join(stopped.stdout.split())
    same = tq("resume", run_id, "--store", str(other))
    assert same.returncode == 1 and "status max_turns" in same.stdout  # the recorded budget still holds
    model_b = tq.script("pair_b", {"b": ["from b"]})  # a's turn is in the log: only b runs
    more = tq("resume", run_id, "--store", str(other), "--max-turns", "5", "--model", model_b)
    assert more.returncode == 0, more.stderr
    assert "status completed" in more.stdout and "from b" in more.stdout


def test_resuming_a_run_that_had_ended_says_nothing_ran_again(tq) -> None:  # type: ignore[no-untyped-def]
    wf = tq.tmp / "pair.py"
    wf.write_text(CHAIN)
    model = tq.script("short", {"a": ["from a"]})  # b has no script: the run fails at b
    failed = tq("run", "pair", "--file", str(wf), "--input", "go", "--model", model)
    assert failed.returncode == 1 and "status failed" in failed.stdout
    assert "last message before it stopped (TextMessage from a)" in failed.stdout  # not shown as the answer
    run_id = failed.stdout.split(" · run ")[1].split()[0]
    again = tq("resume", run_id, "--model", tq.script("full", {"a": ["x"], "b": ["y"]}))
    assert again.returncode == 1
    assert f"run {run_id} had already ended (failed); nothing was run again" in again.stderr
    assert "a failed run cannot be resumed" in again.stderr


def test_an_unknown_workflow_is_reported_before_any_model_is_looked_for(tq) -> None:  # type: ignore[no-untyped-def]
    res = tq("run", "no-such-workflow", "--input", "x")  # the default model is not cached here
    assert res.returncode == 2
    assert "unknown workflow 'no-such-workflow'" in res.stderr and "Hugging Face" not in res.stderr


SCORE = textwrap.dedent(
    """
    from tq_agents import Message, Workflow
    from tq_agents.workflows import workflow

    class Score(Message):
        value: float
        low: float

    @workflow("score", description="A score that may be infinite.")
    def score(model):
        return Workflow("score").add_node("s", lambda m: Score(value=float("inf"), low=float("-inf")))
    """
)


def test_json_output_is_strict_json_when_a_message_holds_an_infinite_float(tq) -> None:  # type: ignore[no-untyped-def]
    import json

    wf = tq.tmp / "score.py"
    wf.write_text(SCORE)
    proc = tq("run", "score", "--file", str(wf), "--input", "go", "--json", "--model", tq.script("none", {}))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert out["final"]["value"] == "Infinity" and out["final"]["low"] == "-Infinity"
