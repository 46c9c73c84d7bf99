"""The support workflow's deterministic guard and the shapes of the three built-in graphs."""

from __future__ import annotations

import pytest
from tq_agents.tools.commerce import Shop
from tq_agents.workflows import available
from tq_agents.workflows.support import check_reply

from tq_agents.messages import SupportReply
from tq_agents.testing import ScriptedModel


@pytest.fixture(scope="module")
def pii(tmp_path_factory):
    return Shop(tmp_path_factory.mktemp("shop") / "shop.db").pii_strings()


@pytest.mark.parametrize(
    ("answer", "lang", "problem"),
    [
        ("", "zh", "empty"),
        ("订单 A1001 预计 2026-12-02 送达，运单号 SF1234567890。", "zh", None),
        ("请联系 li.wei@example.com 了解详情。", "zh", "email"),
        ("Call us: +1 415 555 0134.", "en", "phone"),
        ("请拨打 13800138000。", "zh", "phone"),
        ("Your parcel goes to 12 Market St, San Francisco.", "en", "street address"),
        ("Your order A1001 ships today.", "zh", "Chinese"),
        ("您的订单已发货。", "en", "answer in that language"),
        ("><onDeleteonDeleteexter", "en", "answer in that language"),
        ("We will send you a voucher for the delay.", "en", "outside the shop's policy"),
        ("我们会给您补偿。", "zh", "outside the shop's policy"),
        ("Your order A1001 will arrive on 2026-12-02.", "en", None),
    ],
)
def test_guard_checks(pii, answer, lang, problem):
    issues = check_reply(SupportReply(answer=answer), lang, pii)
    if problem is None:
        assert issues == []
    else:
        assert any(problem in i for i in issues), issues


def test_builtin_workflows_validate_with_bounded_loops():
    entries = available()
    assert {"support", "translate-review", "plan-code-review"} <= set(entries)
    for name in ("support", "translate-review", "plan-code-review"):
        wf = entries[name].build(ScriptedModel())
        wf.validate()
        loops = [s for s in wf.nodes() if s.max_visits is not None]
        assert loops and all(s.on_exhausted for s in loops), name  # every loop ends somewhere, not silently
        assert wf.to_mermaid().startswith("flowchart TD")
