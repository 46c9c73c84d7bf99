"""Role factories: instructions in both languages, typed outputs, tools, and the forced final answer."""

from __future__ import annotations

import asyncio
import re
from datetime import date

import pytest
from tq_agents.tools.commerce import Shop

from tq_agents.errors import ConfigError
from tq_agents.messages import Plan, SupportReply, Translation, UserInput
from tq_agents.roles import INSTRUCTIONS, instructions, planner, reviewer, support, translator
from tq_agents.testing import ScriptedModel, call

_HAN = re.compile(r"[\u4e00-\u9fff]")


@pytest.mark.parametrize("role", sorted(INSTRUCTIONS))
def test_every_role_has_english_and_chinese_instructions(role):
    en, zh = instructions(role, "en"), instructions(role, "zh")
    assert not _HAN.search(en) and len(_HAN.findall(zh)) > 20


def test_unknown_role_or_language_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown role 'poet'"):
        instructions("poet")
    with pytest.raises(ConfigError, match="language 'fr'"):
        instructions("planner", "fr")


def test_factories_set_typed_outputs_tools_and_language():
    m = ScriptedModel()
    assert planner(m).output_type is Plan
    assert reviewer(m, lang="zh").instructions.startswith("你是一名严格的评审")
    t = translator(m, glossary={"parcel": "包裹"})
    assert t.output_type is Translation and sorted(t.tools) == ["check_placeholders", "glossary"]
    s = support(m, shop=Shop(":memory:"))
    assert s.output_type is SupportReply
    assert sorted(s.tools) == ["escalate", "get_order", "refund_policy", "request_refund", "search_products"]


def test_support_turn_queries_the_shop_and_is_forced_to_answer_when_tools_are_spent(tmp_path):
    shop = Shop(tmp_path / "shop.db", today=date(2026, 11, 29))
    answer = {"answer": "订单 A1001 预计 2026-12-02 送达", "actions_taken": ["get_order A1001"], "language": "zh"}
    # The model keeps calling tools; after max_tool_iterations the next request must forbid tools.
    model = ScriptedModel({"support": [call("get_order", order_id="A1001")] * 3 + [answer]})
    agent = support(model, shop=shop)
    res = asyncio.run(agent.run_turn([UserInput(text="我的订单 A1001 什么时候到？")]))
    assert res.status == "completed" and isinstance(res.output, SupportReply)
    assert res.output.answer.startswith("订单 A1001") and res.tool_calls == 3
    assert [r.tool_choice for r in model.requests] == ["auto", "auto", "auto", "none"]
    tool_msgs = [m for m in model.requests[1].messages if m.role == "tool"]
    assert '"eta": "2026-12-02"' in tool_msgs[0].content  # the tool really read the SQLite shop


def test_refused_answer_is_retried_without_tools():
    out = {"source_language": "en", "target_language": "zh", "text": "你好 {name}"}
    model = ScriptedModel({"translator": ["not json at all", out]})
    res = asyncio.run(translator(model).run_turn([UserInput(text="hello {name}")]))
    assert res.status == "completed" and isinstance(res.output, Translation) and res.output.text == "你好 {name}"
    assert [r.tool_choice for r in model.requests] == ["auto", "none"]
    assert "not valid JSON" in model.requests[1].messages[-1].content
