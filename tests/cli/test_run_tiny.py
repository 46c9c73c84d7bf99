"""The three workflows through the real `tq` CLI on the tiny random-weight Qwen checkpoint (LocalQwen,
transformers, constrained decoding). The model writes gibberish; the workflows must still end with a
typed final message, within budget, and replay without divergence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

QUESTION = "我的订单 A1001 什么时候到？"


def test_support_acceptance_command_runs_lists_and_replays(tq, tiny_checkpoint):
    code, out = tq.json("run", "support", "--input", QUESTION, "--model", str(tiny_checkpoint))
    assert code == 0, out
    assert out["status"] == "completed" and out["turns"] >= 4
    assert out["tokens"]["completion"] > 0 and out["tokens"]["prompt"] > out["tokens"]["completion"]
    final = out["final"]
    assert final["type"] == "SupportOutcome" and final["language"] == "zh"
    if final["escalated"]:  # the usual outcome for a random-weight model: a ticket in the human queue
        assert f"#{final['ticket_id']}" in final["reply"]
    listed = tq("runs")
    assert listed.returncode == 0
    assert any(line.startswith(out["run_id"]) and "completed" in line for line in listed.stdout.splitlines())
    code, rep = tq.json("replay", out["run_id"])
    assert code == 0 and rep["diverged"] is False and rep["recorded_status"] == "completed", rep
    assert rep["turns_compared"] == out["turns"]
    human = tq("replay", out["run_id"])
    assert human.returncode == 0 and "no divergence" in human.stdout


@pytest.mark.parametrize(
    ("workflow", "text"),
    [
        ("translate-review", "Your order {order_id} has shipped; see `track()`."),
        ("plan-code-review", "Print the sum of the numbers 1 to 100."),
    ],
)
def test_other_workflows_reach_a_terminal_status_on_the_tiny_model(tq, tiny_checkpoint, workflow, text):
    code, out = tq.json(
        "run", workflow, "--input", text, "--model", str(tiny_checkpoint), "--max-turns", "30", "--deadline", "400"
    )
    assert out["status"] == "completed", out  # bounded loops + forced typed answers: no budget needed
    assert code == 0 and out["final"] is not None and out["turns"] <= 30
    assert out["final"]["type"] in {"FinalTranslation", "CodeReport"}
    code, rep = tq.json("replay", out["run_id"])
    assert code == 0 and not rep["diverged"], rep


def test_readme_quickstart_command_runs_end_to_end(tmp_path):
    """`bash scripts/quickstart.sh` (README Quickstart, first command) against the installed .venv."""
    if not (ROOT / ".venv" / "bin" / "tq").exists():
        if os.environ.get("CI") or os.environ.get("TQ_REQUIRE_ENGINE"):
            pytest.fail("scripts/quickstart.sh needs the repo's .venv (scripts/setup.sh) and it is missing")
        pytest.skip("no .venv in the repo root: run scripts/setup.sh first")
    env = {**os.environ, "TQ_SKIP_SETUP": "1", "TQ_QUICKSTART_DIR": str(tmp_path / "qs")}
    for var in ("TQ_STORE", "TQ_SHOP_DB", "TQ_MODEL"):
        env.pop(var, None)
    proc = subprocess.run(
        ["bash", "scripts/quickstart.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=500
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "wrote qwen2.5 checkpoint" in proc.stdout
    assert "support → SupportOutcome" in proc.stdout and "quickstart: done" in proc.stdout
    qs = Path(tmp_path / "qs")
    assert (qs / "tiny-qwen2.5" / "config.json").is_file() and (qs / "runs.sqlite").is_file()
    run_lines = [line for line in proc.stdout.splitlines() if " support " in line and "completed" in line]
    assert run_lines, proc.stdout


def test_support_against_tq_serve_with_base_url(tq, tiny_checkpoint):
    """`--base-url` points the same workflow at an OpenAI-compatible server (here `tq serve` on the tiny model)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "tq"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tq_agents.cli"]
    server = subprocess.Popen(
        [*cmd, "serve", "--model", str(tiny_checkpoint), "--port", str(port)],
        env=tq.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.5)
        base = f"http://127.0.0.1:{port}/v1"
        code, out = tq.json("run", "support", "--input", QUESTION, "--model", str(tiny_checkpoint), "--base-url", base)
        assert code == 0 and out["status"] == "completed" and out["final"]["type"] == "SupportOutcome", out
        assert out["tokens"]["prompt"] > 0  # usage reported by the server
    finally:
        server.terminate()
        server.wait(timeout=30)
    code, rep = tq.json("replay", out["run_id"])  # replay needs no server: answers come from the record
    assert code == 0 and not rep["diverged"], rep
