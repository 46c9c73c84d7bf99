"""`tq` regressions: text shown literally (no rich markup), full error messages, unreadable inputs as usage
errors, `~` in TQ_STORE, empty and BOM-prefixed input files, and `tq resume --model` switching models."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)

MARKUP = "Your order A1001 ships soon. Tracking: see [/] the order page, [bold]xs[i][/bold] and [red]."


def _run_on_a_terminal(tq, *args: str) -> tuple[int, str, str]:
    """`tq` with stderr on a pseudo-terminal, so the live view is rich's live table, not plain lines."""
    master, slave = pty.openpty()
    exe = Path(sys.executable).parent / "tq"
    env = {**tq.env, "TERM": "xterm-256color"}
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=slave, env=env, cwd=tq.tmp, text=True)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stdout, _ = proc.communicate(timeout=120)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, stdout, b"".join(chunks).decode("utf-8", "replace")


def test_model_text_is_printed_literally_in_the_summary_and_live_view(tq):
    model = tq.script("m", {"support-en": [{"answer": MARKUP}]})
    proc = tq("run", "support", "--input", "Where is my order A1001?", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert MARKUP in proc.stdout and "Traceback" not in proc.stderr

    # on a terminal: the live table's caption shows the last tool call's arguments, as the model wrote them
    model = tq.script(
        "t",
        {
            "support-en": [
                {"tool_calls": [{"name": "get_order", "arguments": {"order_id": "[/]A1001[bold]"}}]},
                {"answer": MARKUP},
            ]
        },
    )
    code, stdout, tty = _run_on_a_terminal(
        tq, "run", "support", "--input", "Where is my order A1001?", "--model", model
    )
    assert code == 0, tty
    assert MARKUP in stdout
    assert "[/]A1001[bold]" in tty and "error:" not in tty


@pytest.mark.engine
def test_program_code_and_output_are_printed_literally(tq):
    code_text = 'xs = [1, 2, 3]\nfor i in range(3):\n    print(xs[i] ** 2)\nprint("[bold]done[/]")\n'
    model = tq.script(
        "pcr",
        {
            "planner": [
                {
                    "goal": "print squares",
                    "steps": [{"description": "write main.py", "acceptance_criteria": ["squares"], "role": "coder"}],
                }
            ],
            "coder": [{"files": {"main.py": code_text}, "command": "python main.py", "summary": "squares"}],
            "reviewer": [{"verdict": "approve"}],
        },
    )
    proc = tq("run", "plan-code-review", "--input", "Print squares", "--model", model)
    assert proc.returncode == 0, proc.stderr
    assert "print(xs[i] ** 2)" in proc.stdout and 'print("[bold]done[/]")' in proc.stdout
    assert "\n│ [bold]done[/]" in proc.stdout  # the program's stdout, from the sandbox


def test_invalid_workflow_error_lists_every_problem(tq):
    (tq.tmp / "invalid.py").write_text(
        textwrap.dedent(
            """
            from tq_agents import Agent, Workflow
            from tq_agents.workflows import workflow

            @workflow("invalid")
            def f(model):
                a = Agent("a", "x")
                return Workflow("invalid", model=model).add_node(a).add_edge("a", "zzz").add_edge("yyy", "a")
            """
        )
    )
    for args in (["show", "invalid"], ["run", "invalid", "--input", "hi", "--model", tq.script("s", {})]):
        proc = tq(*args, "--file", "invalid.py")
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert lines[0] == "error: workflow is invalid:"
        assert any("edge a → zzz" in line and "unknown node 'zzz'" in line for line in lines[1:-1]), lines
        assert any("unknown node 'yyy'" in line for line in lines[1:-1]), lines
        assert lines[-1].startswith("hint: ") and "Traceback" not in proc.stderr


def test_unreadable_inputs_are_usage_errors_with_a_hint(tq):
    (tq.tmp / "garbled.json").write_bytes(b"\xff\xfe garbage")
    (tq.tmp / "garbled.txt").write_bytes(b"\xff\xfe\x00x")
    (tq.tmp / "adir").mkdir()
    (tq.tmp / "afile").write_text("x")
    (tq.tmp / "notadb.sqlite").write_text("not a database, just text\n")
    ok = tq.script("ok", {"support-en": [{"answer": "Hello, how can I help?"}]})
    cases = [
        (["run", "support", "--input", "hi", "--model", "scripted:garbled.json"], "not UTF-8"),
        (["run", "support", "--input", "hi", "--model", "scripted:adir"], "cannot read script adir"),
        (["run", "support", "--input", "hi", "--model", "scripted:"], "names no script file"),
        (["run", "support", "--input", "@garbled.txt", "--model", ok], "--input file garbled.txt is not UTF-8"),
        (["run", "support", "--input", "hi", "--model", ok, "--store", "afile/x.sqlite"], "cannot create run store"),
        (["run", "support", "--input", "hi", "--model", ok, "--store", "adir"], "is a directory"),
        (["runs", "--store", "notadb.sqlite"], "is not a run store"),
        (["model", "tiny", "afile"], "exists and is not a directory"),
    ]
    for args, needle in cases:
        proc = tq(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert lines[0].startswith("error: ") and needle in lines[0], (args, proc.stderr)
        assert lines[1].startswith("hint: ") and "--debug" not in proc.stderr and "Traceback" not in proc.stderr
    assert not tq.store.exists()  # nothing ran


def test_tilde_in_tq_store_is_the_home_directory(tq):
    home = tq.tmp / "fakehome"
    home.mkdir()
    tq.env.update({"HOME": str(home), "TQ_STORE": "~/runs.sqlite"})
    model = tq.script("s", {"support-en": [{"answer": "Your order A1001 will arrive on December 2."}]})
    code, out = tq.json("run", "support", "--input", "Where is my order A1001?", "--model", model)
    assert code == 0 and out["store"] == str(home / "runs.sqlite"), out
    assert (home / "runs.sqlite").is_file() and not (tq.tmp / "~").exists()
    listed = tq("runs", "--json")
    assert [r["run_id"] for r in json.loads(listed.stdout)] == [out["run_id"]]


def test_empty_input_file_is_rejected_like_empty_inline_input(tq):
    (tq.tmp / "empty.txt").write_text("")
    (tq.tmp / "blank.txt").write_text(" \n\t\n")
    model = tq.script("s", {"support-en": [{"answer": "Hello, how can I help you?"}]})
    for name in ("empty.txt", "blank.txt"):
        proc = tq("run", "support", "--input", f"@{name}", "--model", model)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: --input file {name} is empty\nhint: ")
    assert not tq.store.exists()  # no run was started


def test_input_file_with_a_utf8_bom_keeps_its_first_line(tq):
    (tq.tmp / "bom.txt").write_bytes(b"\xef\xbb\xbftarget: fr\nYour order {order_id} has shipped.\n")
    t = {"source_language": "en", "target_language": "fr", "text": "Votre commande {order_id} a été expédiée.\n"}
    model = tq.script("tr", {"translator": [t, t, t], "reviewer": [{"verdict": "approve"}]})
    code, out = tq.json("run", "translate-review", "--input", "@bom.txt", "--model", model)
    final = out["final"]
    assert code == 0 and final["target_language"] == "fr" and final["approved"] is True, out
    assert final["source_text"] == "Your order {order_id} has shipped.\n"


def test_resume_with_another_model_does_not_inherit_the_recorded_base_url(tq):
    # the served model is down: the run ends at its deadline, recorded with --base-url
    code, out = tq.json(
        "run", "support", "--input", "Where is my order A1001?", "--model", "qwen2.5:7b",
        "--base-url", "http://127.0.0.1:9/v1", "--deadline", "1",
    )  # fmt: skip
    assert code == 1 and out["status"] == "deadline", out
    run_id = out["run_id"]
    model = tq.script("s", {"support-en": [{"answer": "Your order A1001 will arrive on December 2."}]})
    # an explicit --base-url still applies to the new model (and a scripted one cannot take it)
    proc = tq("resume", run_id, "--model", model, "--base-url", "http://127.0.0.1:9/v1")
    assert proc.returncode == 2 and "cannot be combined with a scripted model" in proc.stderr
    code, res = tq.json("resume", run_id, "--model", model)
    assert code == 0 and res["run_id"] == run_id and res["status"] == "completed", res
    assert res["final"]["reply"] == "Your order A1001 will arrive on December 2."
