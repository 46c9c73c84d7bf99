"""The support workflow's deterministic guard and the shapes of the three built-in graphs."""

from __future__ import annotations

import asyncio

import pytest
from tq_agents.tools.commerce import Shop
from tq_agents.workflows import available
from tq_agents.workflows.support import build_support, check_reply

from tq_agents.messages import SupportReply
from tq_agents.store import MemoryRunStore
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
        # customers outside zh/en: the reply is checked against *their* language
        ("ご注文 A1001 は12月2日に届く予定です。", "ja", None),
        ("Your order A1001 will arrive on December 2.", "ja", "Japanese: answer in that language"),
        ("Ваш заказ A1001 прибудет 2 декабря.", "ru", None),
        ("ご注文 A1001 は12月2日に届く予定です。", "ru", "Russian: answer in that language"),
        ("Votre commande A1001 arrivera le 2 décembre, merci pour votre patience.", "fr", None),
        ("Your order A1001 will arrive on December 2.", "fr", "French: answer in that language"),
        ("Votre commande A1001 arrivera le 2 décembre, merci pour votre patience.", "en", "English"),
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


def _run_support(tmp_path, question, answers):
    shop = Shop(tmp_path / "shop.db")
    model = ScriptedModel({"support-en": [{"answer": a} for a in answers]})
    result = asyncio.run(build_support(model, shop=shop).run(question, store=MemoryRunStore()))
    assert result.status == "completed", result.reason
    return result.output, shop


@pytest.mark.parametrize(
    ("question", "answer", "lang"),
    [
        ("注文 A1001 はいつ届きますか？", "ご注文 A1001 は12月2日に届く予定です。", "ja"),
        ("Когда придёт мой заказ A1001?", "Ваш заказ A1001 прибудет 2 декабря.", "ru"),
        (
            "Où est ma commande A1001 ? Je ne la trouve pas.",
            "Votre commande A1001 arrivera le 2 décembre, merci pour votre patience.",
            "fr",
        ),
    ],
)
def test_other_languages_are_answered_and_guarded_in_the_customers_language(tmp_path, question, answer, lang):
    """Every non-Chinese customer goes through support-en; its guard checks the customer's language (not "en")
    and the outcome carries it."""
    out, shop = _run_support(tmp_path, question, [answer])
    assert out.type_name == "SupportOutcome"
    assert (out.escalated, out.reply, out.language) == (False, answer, lang)
    assert shop.escalations() == []


def test_wrong_language_is_revised_then_escalated_with_a_holding_message_in_the_customers_language(tmp_path):
    english = "Your order A1001 will arrive on December 2."
    japanese = "ご注文 A1001 は12月2日に届く予定です。"
    out, _ = _run_support(tmp_path / "a", "注文 A1001 はいつ届きますか？", [english, japanese])
    assert (out.escalated, out.reply, out.language) == (False, japanese, "ja")

    out, shop = _run_support(tmp_path / "b", "Когда придёт мой заказ A1001?", [english] * 3)
    assert out.escalated is True and out.language == "ru" and "Russian" in out.reason
    assert f"#{out.ticket_id}" in out.reply and "Спасибо" in out.reply
    assert [(e["id"], e["lang"]) for e in shop.escalations()] == [(out.ticket_id, "ru")]
