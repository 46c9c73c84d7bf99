"""The commerce shop (real SQLite) and the text helpers used by the workflows."""

from __future__ import annotations

import sqlite3
from datetime import date

import pytest
from tq_agents.tools.commerce import Shop, commerce_tools
from tq_agents.tools.text import (
    detect_language,
    find_placeholders,
    glossary_lookup,
    placeholder_report,
    text_tools,
)


@pytest.fixture
def shop(tmp_path):
    return Shop(tmp_path / "shop.db", today=date(2026, 11, 29))


def test_shop_is_created_on_first_use_and_idempotent(tmp_path):
    path = tmp_path / "sub" / "shop.db"
    assert not path.exists()
    Shop(path).get_order("A1001")
    assert path.exists()
    # A second shop over the same file does not duplicate the seed rows.
    Shop(path).get_order("A1001")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM orders").fetchone()[0] == 5
        assert db.execute("SELECT count(*) FROM order_items WHERE order_id='A1002'").fetchone()[0] == 2


def test_get_order_reads_the_database_and_hides_pii(shop):
    assert shop.get_order("A1001").eta == "2026-12-02"  # creates the shop
    with sqlite3.connect(shop.path) as db:
        db.execute("UPDATE orders SET eta='2027-01-09' WHERE order_id='A1001'")
    info = shop.get_order("a1001")
    assert info is not None and info.status == "shipped" and info.eta == "2027-01-09"
    assert [i.sku for i in info.items] == ["P-100"]
    dumped = info.model_dump_json()
    for secret in shop.pii_strings():
        assert secret not in dumped
    assert shop.get_order("Z9999") is None


def test_refund_policy_is_decided_by_the_shop(shop):
    assert shop.request_refund("A1002", "too loud").accepted  # delivered 15 days before 'today'
    late = shop.request_refund("A1005", "changed my mind")
    assert not late.accepted and "outside" in late.reason
    assert not shop.request_refund("A1001", "x").accepted  # in transit
    assert not shop.request_refund("A1004", "x").accepted  # cancelled
    again = shop.request_refund("A1002", "again")
    assert again.accepted and again.reason == "a refund is already pending"
    statuses = [(r["order_id"], r["status"]) for r in shop.refunds()]
    assert statuses == [("A1002", "pending"), ("A1005", "rejected"), ("A1001", "rejected"), ("A1004", "rejected")]


def test_commerce_tools_validate_and_query(shop):
    tools = {t.name: t for t in commerce_tools(shop)}
    assert sorted(tools) == ["escalate", "get_order", "refund_policy", "request_refund", "search_products"]
    res = tools["get_order"].call_sync({"order_id": "A1003"})
    assert res.ok and res.value["status"] == "processing"
    missing = tools["get_order"].call_sync({"order_id": "NOPE"})
    assert missing.ok and missing.value["found"] is False
    bad = tools["get_order"].call_sync({"id": "A1003"})
    assert not bad.ok and "order_id" in bad.content
    products = tools["search_products"].call_sync({"query": "耳机"})
    assert [p["sku"] for p in products.value] == ["P-100"]
    assert "30" in tools["refund_policy"].call_sync({"language": "zh"}).content
    ticket = tools["escalate"].call_sync({"reason": "damaged", "summary": "screen cracked"})
    assert ticket.ok and shop.escalations()[-1]["id"] == ticket.value["ticket_id"]


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("我的订单 A1001 什么时候到？", "zh"),
        ("Where is my order A1001?", "en"),
        ("注文はいつ届きますか", "ja"),
        ("주문이 언제 도착하나요", "ko"),
        ("Где мой заказ", "ru"),
        ("Où est ma commande, s'il vous plaît ?", "fr"),
        ("Wann kommt meine Bestellung?", "de"),
        ("¿Cuándo llega mi pedido?", "es"),
        ("请把 `print('hello world, this is code')` 翻译", "zh"),
    ],
)
def test_detect_language(text, lang):
    assert detect_language(text) == lang


def test_placeholders_are_found_and_compared():
    src = "Hi {name}, order {order_id} ships via `ship()` — see https://x.test/a?b=1 (%s) {{ total }}"
    assert find_placeholders(src) == ["{name}", "{order_id}", "`ship()`", "https://x.test/a?b=1", "%s", "{{ total }}"]
    good = "你好 {name}，订单 {order_id} 通过 `ship()` 发货，见 https://x.test/a?b=1 (%s) {{ total }}"
    assert placeholder_report(src, good).ok
    bad = placeholder_report(src, "你好 {姓名}，订单 {order_id} 发货")
    assert not bad.ok
    assert "{name}" in bad.missing and "{姓名}" in bad.extra and "`ship()`" in bad.missing


def test_glossary_both_directions_and_tool():
    hits = glossary_lookup("Your refund for the orders", "en", "zh")
    assert {(h.source_term, h.target_term) for h in hits} == {("order", "订单"), ("refund", "退款")}
    assert [h.target_term for h in glossary_lookup("退款已处理", "zh", "en")] == ["refund"]
    gloss, check = text_tools({"parcel": "包裹"})
    assert gloss.call_sync({"text": "a parcel", "source_language": "en", "target_language": "zh"}).value == [
        {"term": "parcel", "use": "包裹"}
    ]
    assert check.call_sync({"source": "{a} b", "translation": "b"}).value["missing"] == ["{a}"]
