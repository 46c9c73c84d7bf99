"""`tq` commands, discovery of user workflows, exit codes and error messages (no model needed)."""

from __future__ import annotations

import json
import textwrap

import pytest

pytestmark = pytest.mark.timeout(120)

ANSWER = {"answer": "订单 A1001 预计 12 月 2 日送达。"}


def test_list_shows_builtins_and_local_and_file_workflows(tq):
    (tq.tmp / "workflows").mkdir()
    (tq.tmp / "workflows" / "echo_flow.py").write_text(
        textwrap.dedent(
            '''
            from tq_agents.graph import Workflow
            from tq_agents.messages import TextMessage, UserInput
            from tq_agents.workflows import workflow

            @workflow("shout")
            def shout(model):
                """Upper-case the input."""
                def up(m: UserInput) -> TextMessage:
                    return TextMessage(text=m.text.upper())
                return Workflow("shout", model=model).add_node("up", up)
            '''
        )
    )
    extra = tq.tmp / "extra.py"
    extra.write_text(
        "from tq_agents.workflows import workflow\n"
        "from tq_agents.graph import Workflow\n"
        "@workflow('noop', description='does nothing')\n"
        "def noop(model):\n"
        "    return Workflow('noop', model=model).add_node('n', lambda m: None)\n"
    )
    proc = tq("list", "--file", str(extra))
    assert proc.returncode == 0, proc.stderr
    names = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    assert {"plan-code-review", "translate-review", "support", "shout", "noop"} <= names
    assert "Upper-case the input." in proc.stdout

    run = tq("run", "shout", "--input", "hello", "--model", tq.script("none", {}), "--json")
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["final"]["text"] == "HELLO" and out["status"] == "completed"
    # resume/replay find the workflow again from the run's record
    rep = tq("replay", out["run_id"], "--json")
    assert rep.returncode == 0 and json.loads(rep.stdout)["diverged"] is False


def test_show_lists_nodes_and_mermaid(tq):
    proc = tq("show", "plan-code-review")
    assert proc.returncode == 0
    assert (
        "coder" in proc.stdout and "max 3 visits, then → report" in proc.stdout and "tools: run_python" in proc.stdout
    )
    mer = tq("show", "support", "--mermaid")
    assert mer.returncode == 0 and mer.stdout.startswith("flowchart TD")
    assert "-.->|revise|" in mer.stdout and "-.->|exhausted|" in mer.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["frobnicate"], "No such command"),
        (["run", "support"], "Missing option '--input'"),
        (["run", "support", "--input", "x", "--max-turns", "0"], "--max-turns"),
        (["show"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2(tq, args, needle):
    proc = tq(*args)
    assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr


def test_errors_are_one_line_plus_hint_and_exit_2(tq):
    proc = tq("run", "nope", "--input", "x", "--model", tq.script("s", {}))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "error: unknown workflow 'nope'"
    assert lines[1].startswith("hint: known workflows: plan-code-review, support, translate-review")
    assert len(lines) == 2
    for args, first in [
        (["run", "support", "--input", "@missing.txt"], "error: cannot read --input file"),
        (["run", "support", "--input", "  "], "error: --input is empty"),
        (["run", "support", "--input", "x", "--model", "./no-such-dir"], "error: model path"),
        (["replay", "r-404"], "error: no run store at"),
    ]:
        proc = tq(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith(first) and "hint: " in proc.stderr and "Traceback" not in proc.stderr
    tq("run", "support", "--input", "hi", "--model", tq.script("a", {"support-en": [{"answer": "hello"}]}))
    proc = tq("replay", "r-404")
    assert proc.returncode == 2 and proc.stderr.startswith("error: no run 'r-404' in the store")


def test_offline_hub_model_is_a_readable_error(tq):
    env_home = tq.tmp / "hf"
    tq.env.update({"HF_HOME": str(env_home), "HF_HUB_OFFLINE": "1"})
    proc = tq("run", "support", "--input", "hello")  # default model: Qwen/Qwen2.5-1.5B-Instruct
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "Qwen/Qwen2.5-1.5B-Instruct" in proc.stderr and proc.stderr.startswith("error: ")
    debug = tq("--debug", "run", "support", "--input", "hello")
    assert "Traceback" in debug.stderr


def test_input_from_file_tq_model_env_and_budget_exit_code(tq):
    (tq.tmp / "q.txt").write_text("我的订单 A1001 什么时候到？", encoding="utf-8")
    tq.env["TQ_MODEL"] = tq.script("env", {"support-zh": [ANSWER]})
    proc = tq("run", "support", "--input", "@q.txt", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["final"]["reply"] == ANSWER["answer"]
    tq.env["TQ_MODEL"] = tq.script("env2", {"support-zh": [ANSWER]})
    proc = tq("run", "support", "--input", "@q.txt", "--json", "--max-turns", "2")
    out = json.loads(proc.stdout)
    assert proc.returncode == 1 and out["status"] == "max_turns" and out["turns"] == 2


def test_human_output_live_lines_and_summary(tq):
    model = tq.script(
        "h", {"support-zh": [{"tool_calls": [{"name": "get_order", "arguments": {"order_id": "A1003"}}]}, ANSWER]}
    )
    proc = tq("run", "support", "--input", "我的订单 A1003 什么时候到？", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert "status completed" in proc.stdout and ANSWER["answer"] in proc.stdout
    assert "tool  support-zh: get_order → ok" in proc.stderr and "turn  guard-zh:1" in proc.stderr
    runs = tq("runs", "--json")
    (row,) = json.loads(runs.stdout)
    assert row["workflow"] == "support" and row["status"] == "completed" and "A1003" in row["input"]


_CRASH = """
import os, sys
import tq_agents.workflows.support
from tq_agents.store import SQLiteRunStore
from tq_agents.testing import ScriptedModel
from tq_agents.workflows import get

store, spec = sys.argv[1], sys.argv[2]
st = SQLiteRunStore(store)
wf = get("support").build(ScriptedModel({"support-zh": [lambda request: os._exit(9)]}))

async def main():
    run = wf.start("我的订单 A1001 什么时候到？", store=st)
    st.append(run.run_id, "tq.cli", {"workflow": "support", "file": None, "model": spec, "base_url": None})
    st.flush()
    print(run.run_id, flush=True)
    await run.result()

import asyncio
asyncio.run(main())
"""


def test_resume_finishes_a_crashed_run(tq):
    """The process dies inside the support agent's model call; `tq resume` finishes the run with the model
    recorded at `tq run` time (here a script that answers)."""
    import subprocess
    import sys

    spec = tq.script("resume", {"support-zh": [ANSWER]})
    crash = subprocess.run(
        [sys.executable, "-c", _CRASH, str(tq.store), spec], capture_output=True, text=True, env=tq.env, timeout=60
    )
    assert crash.returncode == 9, crash.stderr
    run_id = crash.stdout.split()[0]
    listed = tq("runs")
    assert f"{run_id}  support          running" in listed.stdout
    proc = tq("resume", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["run_id"] == run_id and out["status"] == "completed" and out["final"]["reply"] == ANSWER["answer"]
    again = tq("resume", run_id, "--json")  # a finished run is reported as it ended
    assert again.returncode == 0 and json.loads(again.stdout)["final"]["reply"] == ANSWER["answer"]
