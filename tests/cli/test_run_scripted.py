"""End-to-end runs of the three built-in workflows through the real `tq` CLI with scripted models.

Only the model is scripted: the support tools query the real SQLite shop, the coder's code runs in the
real sandbox, placeholders are checked by the real checks, and every run is recorded in a real SQLite
store that `tq runs` and `tq replay` read back.
"""

from __future__ import annotations

import sqlite3

import pytest
import tq_agents.workflows.plan_code_review
import tq_agents.workflows.support
import tq_agents.workflows.translate_review  # noqa: F401  (registers the workflows' message types)

from tq_agents.store import SQLiteRunStore

pytestmark = pytest.mark.timeout(180)

ZH_QUESTION = "我的订单 A1001 什么时候到？"


def _events(store, run_id, kind):
    st = SQLiteRunStore(store)
    try:
        return [e.payload for e in st.load_events(run_id) if e.kind == kind]
    finally:
        st.close()


def _messages(store, run_id, type_name):
    """Messages of one type that the run emitted, rebuilt from the store as typed objects (then dumped)."""
    from tq_agents.events import MessageEmitted, event_from_stored

    st = SQLiteRunStore(store)
    try:
        evs = [event_from_stored(e.run_id, e.seq, e.ts, e.kind, e.payload) for e in st.load_events(run_id)]
    finally:
        st.close()
    from tq_agents.messages import Message

    msgs = [
        e.message if isinstance(e.message, Message) else Message.from_dict(e.message)
        for e in evs
        if isinstance(e, MessageEmitted)
    ]
    return [m.payload() for m in msgs if m.type_name == type_name]


def _move_eta(shop, order_id, eta):
    from tq_agents.tools.commerce import Shop

    Shop(shop).get_order(order_id)  # create the shop with its seed data
    with sqlite3.connect(shop) as db:
        db.execute("UPDATE orders SET eta = ? WHERE order_id = ?", (eta, order_id))


def test_support_happy_path_queries_the_shop_then_runs_and_replay(tq):
    _move_eta(tq.shop, "A1001", "2027-01-09")  # a value only the database knows
    model = tq.script(
        "support",
        {
            "support-zh": [
                {"tool_calls": [{"name": "get_order", "arguments": {"order_id": "A1001"}}]},
                {"answer": "您的订单 A1001 已由顺丰发货，预计 2027-01-09 送达。", "actions_taken": ["查询订单 A1001"]},
            ]
        },
    )
    code, out = tq.json("run", "support", "--input", ZH_QUESTION, "--model", model)
    assert code == 0, out
    assert set(out) >= {"run_id", "status", "turns", "tokens", "final"}
    assert out["status"] == "completed" and out["turns"] == 4
    assert out["tokens"]["total"] == out["tokens"]["prompt"] + out["tokens"]["completion"] > 0
    final = out["final"]
    assert final["type"] == "SupportOutcome" and final["escalated"] is False and final["language"] == "zh"
    assert "2027-01-09" in final["reply"]
    (tool,) = _events(tq.store, out["run_id"], "ToolCallFinished")
    assert tool["tool"] == "get_order" and tool["result"]["value"]["eta"] == "2027-01-09"
    listed = tq("runs")
    assert listed.returncode == 0 and out["run_id"] in listed.stdout and "support" in listed.stdout
    code, rep = tq.json("replay", out["run_id"])
    assert code == 0 and rep["diverged"] is False and rep["turns_compared"] == 4, rep


def test_support_revise_loop_then_reply_and_exhaustion_escalates(tq):
    leaky = {"answer": "订单 A1001 预计 12 月 2 日送达，有问题请致电 +86 138 0013 8000。"}
    english = {"answer": "Your order A1001 will arrive on December 2."}
    fixed = {"answer": "订单 A1001 预计 12 月 2 日送达。"}
    model = tq.script("loop", {"support-zh": [leaky, english, fixed]})
    code, out = tq.json("run", "support", "--input", ZH_QUESTION, "--model", model)
    assert code == 0 and out["final"]["reply"] == fixed["answer"] and not out["final"]["escalated"]
    verdicts = _messages(tq.store, out["run_id"], "GuardVerdict")
    assert [v["verdict"] for v in verdicts] == ["revise", "revise", "approve"]
    assert "phone number" in verdicts[0]["issues"][0] and "Chinese" in verdicts[1]["issues"][0]

    model = tq.script("exhaust", {"support-zh": [leaky, leaky, leaky]})
    code, out = tq.json("run", "support", "--input", ZH_QUESTION, "--model", model)
    final = out["final"]
    assert code == 0 and final["escalated"] is True and "phone number" in final["reason"]
    assert f"#{final['ticket_id']}" in final["reply"] and "人工客服" in final["reply"]
    with sqlite3.connect(tq.shop) as db:
        queue = db.execute("SELECT id, lang FROM escalations").fetchall()
    assert queue == [(final["ticket_id"], "zh")]
    code, rep = tq.json("replay", out["run_id"])  # the escalation is idempotent: replay finds the same ticket
    assert code == 0 and not rep["diverged"], rep


def test_support_english_customer_and_refund_tool(tq):
    model = tq.script(
        "refund",
        {
            "support-en": [
                {"tool_calls": [{"name": "request_refund", "arguments": {"order_id": "A1005", "reason": "too slow"}}]},
                {"answer": "Sorry, order A1005 is outside the 30-day refund window.", "actions_taken": ["refund"]},
            ]
        },
    )
    code, out = tq.json("run", "support", "--input", "Please refund my order A1005", "--model", model)
    assert code == 0 and out["final"]["language"] == "en", out
    (tool,) = _events(tq.store, out["run_id"], "ToolCallFinished")
    assert tool["result"]["value"]["accepted"] is False and "outside" in tool["result"]["value"]["reason"]
    with sqlite3.connect(tq.shop) as db:
        assert db.execute("SELECT order_id, status FROM refunds").fetchall() == [("A1005", "rejected")]


SOURCE = "您的订单 {order_id} 已发货，退款请见 `refund()`，详情见 https://shop.example/help 。"


def test_translate_review_placeholders_survive_the_revise_loop(tq):
    draft = {"source_language": "zh", "target_language": "en"}
    model = tq.script(
        "translate",
        {
            "translator": [
                {
                    "tool_calls": [
                        {
                            "name": "glossary",
                            "arguments": {"text": SOURCE, "source_language": "zh", "target_language": "en"},
                        }
                    ]
                },
                {
                    **draft,
                    "text": "Your order has shipped; for a refund see refund(), details at https://shop.example/help.",
                },
                {**draft, "text": "Your order {order_id} shipped; refund: `refund()`; see https://shop.example/help ."},
                {
                    **draft,
                    "text": "Your order {order_id} has shipped. For a refund, see `refund()`; "
                    "details at https://shop.example/help .",
                    "glossary_terms": ["订单", "退款"],
                },
            ],
            "reviewer": [
                {"verdict": "revise", "issues": [{"severity": "low", "description": "too terse"}]},
                {"verdict": "approve"},
            ],
        },
    )
    code, out = tq.json("run", "translate-review", "--input", SOURCE, "--model", model)
    assert code == 0 and out["status"] == "completed", out
    final = out["final"]
    assert final["type"] == "FinalTranslation" and final["approved"] is True
    assert final["source_language"] == "zh" and final["target_language"] == "en"
    for kept in ("{order_id}", "`refund()`", "https://shop.example/help"):
        assert kept in final["text"]
    checks = _messages(tq.store, out["run_id"], "TranslationCheck")
    assert [c["ok"] for c in checks] == [False, True, True]
    assert "{order_id}" in checks[0]["issues"][0] and "`refund()`" in checks[0]["issues"][0]
    (gloss,) = _events(tq.store, out["run_id"], "ToolCallFinished")
    assert {"term": "订单", "use": "order"} in gloss["result"]["value"]


def test_translate_review_target_override_and_exhaustion(tq):
    bad = {"source_language": "en", "target_language": "zh", "text": "你的订单已发货"}
    model = tq.script("tr2", {"translator": [bad, bad, bad]})
    code, out = tq.json(
        "run", "translate-review", "--input", "target: zh\nYour order {order_id} shipped", "--model", model
    )
    final = out["final"]
    assert code == 0 and final["approved"] is False and final["target_language"] == "zh"
    assert any("{order_id}" in issue for issue in final["open_issues"])


PLAN = {
    "goal": "print the sum of 1..100",
    "steps": [{"description": "write main.py", "acceptance_criteria": ["prints 5050"], "role": "coder"}],
}


@pytest.mark.engine
def test_plan_code_review_runs_code_in_the_sandbox_with_a_revise_loop(tq):
    buggy = "print(sum(range(1, 101))"
    good = "total = sum(range(1, 101))\nprint(total)\n"
    labelled = "import sys\ntotal = sum(range(1, 101))\nprint(f'sum={total}', sys.version_info[0])\n"
    model = tq.script(
        "pcr",
        {
            "planner": [PLAN],
            "coder": [
                {"tool_calls": [{"name": "run_python", "arguments": {"code": buggy}}]},
                {"tool_calls": [{"name": "run_python", "arguments": {"code": good}}]},
                {"files": {"main.py": buggy}, "command": "python main.py", "summary": "sums 1..100"},
                {"files": {"main.py": good}, "command": "python main.py", "summary": "sums 1..100"},
                {"files": {"main.py": labelled}, "command": "python main.py", "summary": "labelled sum"},
            ],
            "reviewer": [
                {"verdict": "revise", "issues": [{"severity": "low", "description": "label the output"}]},
                {"verdict": "approve"},
            ],
        },
    )
    code, out = tq.json("run", "plan-code-review", "--input", "Print the sum of 1..100", "--model", model)
    assert code == 0 and out["status"] == "completed", out
    final = out["final"]
    assert final["type"] == "CodeReport" and final["approved"] is True and final["exit_code"] == 0
    assert final["stdout"].strip() == "sum=5050 3"  # produced by running the file, not by the script
    tools = _events(tq.store, out["run_id"], "ToolCallFinished")
    assert [t["result"]["value"]["exit_code"] for t in tools] == [1, 0]
    assert "SyntaxError" in tools[0]["result"]["value"]["stderr_tail"]
    assert tools[1]["result"]["value"]["stdout_tail"].strip() == "5050"
    runs = _messages(tq.store, out["run_id"], "ExecutedCode")
    assert [(r["ok"], r["exit_code"]) for r in runs] == [(False, 1), (True, 0), (True, 0)]
    assert "SyntaxError" in runs[0]["stderr"]
    code, rep = tq.json("replay", out["run_id"])
    assert code == 0 and not rep["diverged"], rep


@pytest.mark.parametrize("text", ["target: fr\n", "target: fr", "target: fr\n   \n"])
def test_translate_review_with_nothing_to_translate_fails_at_once(tq, text):
    # the translator used to spend its rounds translating the empty text
    model = tq.script("tr3", {"translator": [], "reviewer": []})
    code, out = tq.json("run", "translate-review", "--input", text, "--model", model)
    assert code == 1 and out["status"] == "failed" and out["turns"] == 1
    assert "nothing to translate" in out["reason"] and "after its target line" in out["reason"]
