"""The examples/ run: the dozen-line custom workflow through `tq --file`, and the FastAPI support app
served by a real uvicorn server and called by a real HTTP client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


def _tq(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "tq"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "tq_agents.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=100)


def test_custom_workflow_example_runs_with_tq_file(tmp_path):
    example = ROOT / "examples" / "custom_workflow.py"
    assert len([ln for ln in example.read_text().splitlines() if ln.strip()]) <= 20
    script = tmp_path / "haiku.json"
    script.write_text(
        json.dumps(
            {
                "poet": [
                    "queues queues queues",
                    "tokens wait in line / the batch fills and then it flows / one step, all at once",
                ],
                "critic": [
                    {"verdict": "revise", "issues": [{"severity": "low", "description": "not 5-7-5"}]},
                    {"verdict": "approve"},
                ],
            }
        )
    )
    env = {**os.environ, "TQ_STORE": str(tmp_path / "runs.sqlite"), "PYTHONPATH": str(ROOT)}
    listed = _tq("list", "--file", str(example), env=env)
    assert "haiku" in listed.stdout and str(example) in listed.stdout
    proc = _tq(
        "run", "haiku", "--file", str(example), "--input", "queues", "--model", f"scripted:{script}", "--json", env=env
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "completed" and out["turns"] == 4 and out["final"]["verdict"] == "approve"
    rep = _tq("replay", out["run_id"], "--json", env=env)  # the file is found again from the run's record
    assert rep.returncode == 0 and json.loads(rep.stdout)["diverged"] is False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_web_support_example_one_store_and_one_conversation_per_session(tmp_path):
    import httpx
    import uvicorn

    sys.path.insert(0, str(ROOT))
    try:
        from examples.web_support import create_app
    finally:
        sys.path.remove(str(ROOT))
    from tq_agents.tools.commerce import Shop

    from tq_agents.store import SQLiteRunStore
    from tq_agents.testing import ScriptedModel, call

    model = ScriptedModel(
        {
            "support-zh": [
                call("get_order", order_id="A1001"),
                {"answer": "您的订单 A1001 预计 2026-12-02 送达。"},
                {"answer": "不客气，祝您购物愉快！"},
            ],
            "support-en": [{"answer": "Order A1003 is being processed and ships soon."}],
        }
    )
    store = tmp_path / "deploy.sqlite"
    app = create_app(model, store_path=store, shop=Shop(tmp_path / "shop.db"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started and time.time() < deadline:
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            a1 = client.post("/chat/alice", json={"message": "我的订单 A1001 什么时候到？"}).json()
            b1 = client.post("/chat/bob", json={"message": "Where is my order A1003?"}).json()
            a2 = client.post("/chat/alice", json={"message": "谢谢！"}).json()
            assert a1["reply"] == "您的订单 A1001 预计 2026-12-02 送达。" and a1["language"] == "zh"
            assert b1["reply"].startswith("Order A1003") and b1["language"] == "en"
            assert a2["reply"] == "不客气，祝您购物愉快！"
            convo = client.get("/chat/alice").json()
            assert [t["run_id"] for t in convo["turns"]] == [a1["run_id"], a2["run_id"]]
            assert client.get("/chat/nobody").status_code == 404
            assert client.post("/chat/alice", json={"message": ""}).status_code == 422
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    # The second turn of alice's session saw the first exchange; bob's session did not.
    last_zh = [r for r in model.requests if r.agent == "support-zh"][-1]
    assert "Conversation so far" in last_zh.messages[-1].content and "A1001" in last_zh.messages[-1].content
    en = next(r for r in model.requests if r.agent == "support-en")
    assert "Conversation so far" not in en.messages[-1].content
    st = SQLiteRunStore(store)  # one store for the deployment holds every run
    try:
        runs = {r.run_id: r for r in st.list_runs()}
    finally:
        st.close()
    assert {a1["run_id"], b1["run_id"], a2["run_id"]} <= set(runs)
    assert all(runs[r].status == "completed" for r in (a1["run_id"], b1["run_id"], a2["run_id"]))


def test_readme_quickstart_and_tour_code():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quickstart", 1)[1].split("##", 1)[0]
    bash = re.findall(r"```bash\n(.*?)```", quick, re.S)[0]
    commands = [line.split("#")[0].strip() for line in bash.strip().splitlines()]
    assert commands == ["bash scripts/quickstart.sh", "bash scripts/test.sh"]
    for script in ("scripts/quickstart.sh", "scripts/test.sh"):
        assert (ROOT / script).is_file()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    for block in blocks:
        compile(block, "README.md", "exec")
    # The tour's workflow definition runs as written (with a scripted model standing in for Qwen).
    from tq_agents.testing import ScriptedModel

    scope: dict[str, object] = {}
    exec(blocks[0], scope)
    model = ScriptedModel({"poet": ["a haiku"], "critic": [{"verdict": "approve"}]})
    result = scope["haiku"](model).run_sync("queues", max_turns=10)  # type: ignore[operator]
    assert result.status == "completed" and result.turns == 2
