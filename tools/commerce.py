"""A demo e-commerce shop in one SQLite file, and the tools a support agent uses over it.

The shop is created (schema + seed data) on first use, idempotently. Tools never return a customer's
email, phone or street address: the support agent has no need for them, so they cannot leak.

    shop = Shop("shop.db")
    shop.get_order("A1001").status          # 'shipped'
    tools = commerce_tools(shop)            # get_order, search_products, refund_policy, request_refund, escalate
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tq_agents._tool import Tool

__all__ = [
    "EscalationTicket",
    "OrderInfo",
    "OrderItem",
    "ProductInfo",
    "RefundDecision",
    "Shop",
    "commerce_tools",
    "default_shop_path",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL, address TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products (
    sku TEXT PRIMARY KEY, name TEXT NOT NULL, name_zh TEXT NOT NULL, price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), status TEXT NOT NULL,
    placed_on TEXT NOT NULL, eta TEXT, delivered_on TEXT, carrier TEXT, tracking TEXT, total_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS order_items (
    order_id TEXT NOT NULL REFERENCES orders(order_id), sku TEXT NOT NULL REFERENCES products(sku),
    qty INTEGER NOT NULL, PRIMARY KEY (order_id, sku));
CREATE TABLE IF NOT EXISTS policies (name TEXT NOT NULL, lang TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (name, lang));
CREATE TABLE IF NOT EXISTS refunds (
    id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, reason TEXT NOT NULL, amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS escalations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, reason TEXT NOT NULL, summary TEXT NOT NULL, lang TEXT NOT NULL,
    order_id TEXT, status TEXT NOT NULL DEFAULT 'open', created_at TEXT NOT NULL, dedup_key TEXT UNIQUE);
"""

_CUSTOMERS = [
    (1, "Li Wei", "li.wei@example.com", "+86 138 0013 8000", "88 Nanjing Rd, Shanghai"),
    (2, "Alice Martin", "alice.martin@example.com", "+1 415 555 0134", "12 Market St, San Francisco"),
    (3, "Zhang Min", "zhang.min@example.com", "+86 139 0000 1234", "5 Zhongguancun St, Beijing"),
]
_PRODUCTS = [
    ("P-100", "Wireless earbuds", "无线耳机", 29900, 120),
    ("P-200", "Mechanical keyboard", "机械键盘", 45900, 35),
    ("P-300", "USB-C charger 65W", "65W USB-C 充电器", 15900, 0),
    ("P-400", "Stainless water bottle", "不锈钢水杯", 8900, 400),
]
_ORDERS = [
    ("A1001", 1, "shipped", "2026-11-25", "2026-12-02", None, "SF Express", "SF1234567890", 29900),
    ("A1002", 2, "delivered", "2026-11-10", "2026-11-14", "2026-11-14", "UPS", "1Z999AA10123456784", 54800),
    ("A1003", 3, "processing", "2026-11-28", "2026-12-05", None, None, None, 15900),
    ("A1004", 2, "cancelled", "2026-10-01", None, None, None, None, 8900),
    ("A1005", 1, "delivered", "2026-08-01", "2026-08-05", "2026-08-05", "SF Express", "SF0000000001", 45900),
]
_ITEMS = [
    ("A1001", "P-100", 1),
    ("A1002", "P-200", 1),
    ("A1002", "P-400", 1),
    ("A1003", "P-300", 1),
    ("A1004", "P-400", 1),
    ("A1005", "P-200", 1),
]
REFUND_WINDOW_DAYS = 30
_POLICIES = [
    (
        "refund",
        "en",
        f"Refunds: delivered orders can be refunded within {REFUND_WINDOW_DAYS} days of delivery for any reason; "
        "items must be unused and in their original packaging. Orders not yet shipped can be cancelled for a full "
        "refund instead. Shipped orders in transit cannot be refunded until delivered. Refunds are paid to the "
        "original payment method within 5 business days of approval. Cancelled orders are already refunded. "
        "Anything else (damaged goods, lost parcels, disputes) goes to a human agent.",
    ),
    (
        "refund",
        "zh",
        f"退款政策：已送达的订单在送达后 {REFUND_WINDOW_DAYS} 天内可无理由退款，商品须未使用且包装完好。"
        "尚未发货的订单可直接取消并全额退款。运输中的订单需送达后才能申请退款。"
        "退款批准后 5 个工作日内原路退回。已取消的订单已自动退款。"
        "其他情况（商品损坏、包裹丢失、争议）转人工客服处理。",
    ),
]


def default_shop_path() -> Path:
    """Where the demo shop lives unless told otherwise: ``$TQ_SHOP_DB`` or ``<user data dir>/shop.db``."""
    env = os.environ.get("TQ_SHOP_DB")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tq-agents" / "shop.db"


class OrderItem(BaseModel):
    """One line of an order."""

    sku: str
    name: str
    qty: int


class OrderInfo(BaseModel):
    """What support may tell a customer about an order. No email, phone or address."""

    order_id: str
    status: str = Field(description="processing, shipped, delivered or cancelled")
    placed_on: str
    eta: str | None = Field(default=None, description="Expected delivery date (YYYY-MM-DD), if known.")
    delivered_on: str | None = None
    carrier: str | None = None
    tracking: str | None = None
    total: str = Field(description="Order total, e.g. '299.00 CNY'.")
    customer_first_name: str
    items: list[OrderItem]


class ProductInfo(BaseModel):
    """A product in the catalogue."""

    sku: str
    name: str
    name_zh: str
    price: str
    in_stock: bool


class RefundDecision(BaseModel):
    """Outcome of a refund request, decided by the shop's policy (not by the model)."""

    order_id: str
    accepted: bool
    status: str = Field(description="'pending' (accepted, awaiting payout) or 'rejected'")
    reason: str = Field(description="Why, in words fit to tell the customer.")
    refund_id: int | None = None
    amount: str | None = None


class EscalationTicket(BaseModel):
    """A ticket in the human support queue."""

    ticket_id: int
    status: str
    reason: str


def _money(cents: int) -> str:
    return f"{cents / 100:.2f} CNY"


class Shop:
    """The demo shop: one SQLite file, created with seed data on first use. Thread-safe; cheap to construct."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, today: date | None = None) -> None:
        self.path = Path(path) if path is not None else default_shop_path()
        self._today = today
        self._lock = threading.Lock()
        self._ready = False

    @property
    def today(self) -> date:
        """The shop's notion of today (fixed when given, for reproducible tests)."""
        return self._today or date.today()

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self._ready:
                self._create()
            conn = sqlite3.connect(self.path, timeout=10)
            try:
                conn.row_factory = sqlite3.Row
                yield conn
                conn.commit()
            finally:
                conn.close()

    def _create(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT OR IGNORE INTO customers VALUES (?,?,?,?,?)", _CUSTOMERS)
            conn.executemany("INSERT OR IGNORE INTO products VALUES (?,?,?,?,?)", _PRODUCTS)
            conn.executemany("INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?,?,?,?,?)", _ORDERS)
            conn.executemany("INSERT OR IGNORE INTO order_items VALUES (?,?,?)", _ITEMS)
            conn.executemany("INSERT OR IGNORE INTO policies VALUES (?,?,?)", _POLICIES)
            conn.commit()
        finally:
            conn.close()
        self._ready = True

    # -- queries -----------------------------------------------------------------------------------------

    def get_order(self, order_id: str) -> OrderInfo | None:
        """The order with this id (case-insensitive), or ``None``."""
        with self._db() as db:
            row = db.execute(
                "SELECT o.*, c.name AS cname FROM orders o JOIN customers c ON c.id = o.customer_id "
                "WHERE o.order_id = ?",
                (order_id.strip().upper(),),
            ).fetchone()
            if row is None:
                return None
            items = db.execute(
                "SELECT i.sku, p.name, i.qty FROM order_items i JOIN products p ON p.sku = i.sku "
                "WHERE i.order_id = ? ORDER BY i.sku",
                (row["order_id"],),
            ).fetchall()
        return OrderInfo(
            order_id=row["order_id"],
            status=row["status"],
            placed_on=row["placed_on"],
            eta=row["eta"],
            delivered_on=row["delivered_on"],
            carrier=row["carrier"],
            tracking=row["tracking"],
            total=_money(row["total_cents"]),
            customer_first_name=row["cname"].split()[0],
            items=[OrderItem(sku=r["sku"], name=r["name"], qty=r["qty"]) for r in items],
        )

    def search_products(self, query: str = "") -> list[ProductInfo]:
        """Products whose English or Chinese name contains ``query`` (all products for an empty query)."""
        like = f"%{query.strip()}%"
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM products WHERE name LIKE ? OR name_zh LIKE ? OR sku LIKE ? ORDER BY sku",
                (like, like, like),
            ).fetchall()
        return [
            ProductInfo(
                sku=r["sku"],
                name=r["name"],
                name_zh=r["name_zh"],
                price=_money(r["price_cents"]),
                in_stock=r["stock"] > 0,
            )
            for r in rows
        ]

    def policy(self, name: str = "refund", lang: str = "en") -> str:
        """A policy text in ``lang`` (falls back to English)."""
        with self._db() as db:
            row = db.execute("SELECT body FROM policies WHERE name = ? AND lang = ?", (name, lang)).fetchone()
            if row is None:
                row = db.execute("SELECT body FROM policies WHERE name = ? AND lang = 'en'", (name,)).fetchone()
        return row["body"] if row else ""

    # -- actions -----------------------------------------------------------------------------------------

    def request_refund(self, order_id: str, reason: str) -> RefundDecision:
        """Apply the refund policy to an order and record the request. The policy decides, not the caller."""
        oid = order_id.strip().upper()
        with self._db() as db:
            row = db.execute("SELECT * FROM orders WHERE order_id = ?", (oid,)).fetchone()
            if row is None:
                return RefundDecision(
                    order_id=oid, accepted=False, status="rejected", reason=f"no order with id {oid!r}"
                )
            status = row["status"]
            accepted, why = False, ""
            if status == "cancelled":
                why = "the order was cancelled and has already been refunded"
            elif status in ("processing",):
                why = "the order has not shipped yet: it can be cancelled for a full refund instead"
            elif status == "shipped":
                why = "the order is in transit: a refund can be requested once it is delivered"
            elif status == "delivered":
                delivered = date.fromisoformat(row["delivered_on"])
                age = (self.today - delivered).days
                if age <= REFUND_WINDOW_DAYS:
                    accepted, why = True, f"delivered {age} days ago, within the {REFUND_WINDOW_DAYS}-day window"
                else:
                    why = f"delivered {age} days ago, outside the {REFUND_WINDOW_DAYS}-day window"
            dup = db.execute("SELECT id FROM refunds WHERE order_id = ? AND status = 'pending'", (oid,)).fetchone()
            if accepted and dup is not None:
                return RefundDecision(
                    order_id=oid, accepted=True, status="pending", reason="a refund is already pending",
                    refund_id=dup["id"], amount=_money(row["total_cents"]),
                )  # fmt: skip
            cur = db.execute(
                "INSERT INTO refunds (order_id, reason, amount_cents, status, created_at) VALUES (?,?,?,?,?)",
                (oid, reason, row["total_cents"], "pending" if accepted else "rejected", _now()),
            )
        return RefundDecision(
            order_id=oid,
            accepted=accepted,
            status="pending" if accepted else "rejected",
            reason=why,
            refund_id=cur.lastrowid,
            amount=_money(row["total_cents"]) if accepted else None,
        )

    def escalate(
        self, reason: str, summary: str, *, lang: str = "en", order_id: str | None = None, key: str | None = None
    ) -> EscalationTicket:
        """Put a case in the human support queue. With ``key``, the same key returns the same ticket."""
        with self._db() as db:
            if key is not None:
                row = db.execute("SELECT id, status, reason FROM escalations WHERE dedup_key = ?", (key,)).fetchone()
                if row is not None:
                    return EscalationTicket(ticket_id=row["id"], status=row["status"], reason=row["reason"])
            cur = db.execute(
                "INSERT INTO escalations (reason, summary, lang, order_id, created_at, dedup_key) VALUES (?,?,?,?,?,?)",
                (reason, summary, lang, order_id, _now(), key),
            )
        return EscalationTicket(ticket_id=int(cur.lastrowid or 0), status="open", reason=reason)

    def escalations(self) -> list[dict[str, object]]:
        """The human queue, oldest first (for operators and tests)."""
        with self._db() as db:
            return [dict(r) for r in db.execute("SELECT * FROM escalations ORDER BY id").fetchall()]

    def refunds(self) -> list[dict[str, object]]:
        """All refund requests, oldest first."""
        with self._db() as db:
            return [dict(r) for r in db.execute("SELECT * FROM refunds ORDER BY id").fetchall()]

    def pii_strings(self) -> list[str]:
        """Every email, phone and address in the shop: what a reply must never contain."""
        with self._db() as db:
            rows = db.execute("SELECT email, phone, address FROM customers").fetchall()
        return [v for r in rows for v in (r["email"], r["phone"], r["address"])]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def commerce_tools(shop: Shop | None = None) -> list[Tool]:
    """The support agent's tools over ``shop``: get_order, search_products, refund_policy, request_refund, escalate."""
    from tq_agents._tool import tool

    s = shop if shop is not None else Shop()

    @tool
    def get_order(order_id: str) -> dict[str, Any]:
        """Look up an order: status, expected delivery date, carrier, tracking number, items.

        Args:
            order_id: The order id, e.g. "A1001".
        """
        info = s.get_order(order_id)
        if info is None:
            return {"found": False, "order_id": order_id, "message": f"no order with id {order_id!r}"}
        return {"found": True, **info.model_dump()}

    @tool
    def search_products(query: str) -> list[dict[str, Any]]:
        """Search the product catalogue by English or Chinese name; returns price and stock.

        Args:
            query: Words from the product name, e.g. "keyboard" or "耳机".
        """
        return [p.model_dump() for p in s.search_products(query)]

    @tool
    def refund_policy(language: str = "en") -> str:
        """The shop's refund policy text.

        Args:
            language: "en" or "zh".
        """
        return s.policy("refund", language)

    @tool
    def request_refund(order_id: str, reason: str) -> dict[str, Any]:
        """Ask for a refund of an order; the shop's policy decides and the answer says why.

        Args:
            order_id: The order id, e.g. "A1002".
            reason: The customer's reason, in a few words.
        """
        return s.request_refund(order_id, reason).model_dump()

    @tool
    def escalate(reason: str, summary: str) -> dict[str, Any]:
        """Hand the case to a human support agent (damaged goods, lost parcel, disputes, anything unsolved).

        Args:
            reason: Why a human is needed, in a few words.
            summary: A short summary of the case for the human agent.
        """
        return s.escalate(reason, summary).model_dump()

    return [get_order, search_products, refund_policy, request_refund, escalate]
