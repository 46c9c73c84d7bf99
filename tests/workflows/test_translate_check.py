"""The deterministic checks of translate-review: placeholders, Markdown skeleton, target language, glossary."""

from __future__ import annotations

from tq_agents.tools.text import markdown_outline
from tq_agents.workflows.translate_review import TranslationDraft, check_translation

SRC = "# 退货说明\n\n- 订单 {order_id} 的退款见 `refund()`\n- 详情：https://shop.example/help\n"


def _draft(text: str, target: str = "en") -> TranslationDraft:
    return TranslationDraft(
        source_language="zh", target_language=target, text=text, source_text=SRC, required_target=target
    )


def test_a_faithful_translation_passes():
    good = "# Returns\n\n- Refunds for order {order_id}: see `refund()`\n- Details: https://shop.example/help\n"
    check = check_translation(_draft(good))
    assert check.ok and check.issues == []
    assert check.draft["source_text"] == SRC and check.draft["text"] == good


def test_each_kind_of_damage_is_reported():
    flat = "Returns. Refunds for order {order_id}: see `refund()`. Details: https://shop.example/help"
    assert any("Markdown structure" in i for i in check_translation(_draft(flat)).issues)
    lost = "# Returns\n\n- Refunds for order: see refund()\n- Details: https://shop.example/help\n"
    issues = check_translation(_draft(lost)).issues
    assert any("{order_id}" in i and "`refund()`" in i for i in issues)
    chinese = "# 退货\n\n- 订单 {order_id} 退款 `refund()`\n- https://shop.example/help\n"
    assert any("must be in English" in i for i in check_translation(_draft(chinese)).issues)
    no_term = "# Returns\n\n- Money back for {order_id}: `refund()`\n- Details: https://shop.example/help\n"
    assert any("glossary: translate '订单' as 'order'" in i for i in check_translation(_draft(no_term)).issues)
    assert check_translation(_draft("")).issues[0] == "the translation is empty"


def test_markdown_outline():
    assert markdown_outline("# T\n\n- a\n* b\n3) c\n> q\n```\nx\n```\n| a |") == [
        "#",
        "-",
        "*",
        "1.",
        ">",
        "```",
        "```",
        "|",
    ]
    assert markdown_outline("plain text\nmore") == []
