"""``support``: e-commerce customer support over the demo SQLite shop.

```
intake ──zh──▶ support-zh ──▶ guard-zh ──approve──▶ reply
   │                ▲    (revise, ≤3 visits)│──escalate──▶ escalate (human queue)
   └──other─▶ support-en ──▶ guard-en ──…
```

* ``intake`` detects the customer's language and routes to the support agent with instructions in it.
* ``support-*`` answers with tools over the shop (orders, products, refund policy, refund requests, escalation).
* ``guard-*`` is a deterministic policy check: no email/phone/address, the reply is in the customer's language
  (the one ``intake`` detected, whichever branch answers), no promise outside policy, not empty. A failed check
  sends the reply back with the reasons; after three attempts (or when the agent sets ``escalate``) the case goes
  to the human queue in the shop.
* Every path ends in a ``SupportOutcome`` in the customer's language: the reply to send, or a holding message
  with the ticket number (in English for a language without a holding message).

The loop is bounded and every output is a typed message, so even a random-weight model under
constrained decoding reaches a terminal status (usually an escalation).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import Field
from tq_agents.tools.commerce import Shop
from tq_agents.tools.text import LANGUAGE_NAMES, detect_language, latin_word_evidence
from tq_agents.workflows._registry import workflow

from tq_agents.graph import Workflow
from tq_agents.messages import Message, SupportReply, UserInput
from tq_agents.roles import support as support_role

if TYPE_CHECKING:
    from tq_agents.models.base import ChatModel

__all__ = ["CustomerMessage", "GuardVerdict", "SupportDraft", "SupportOutcome", "build_support", "check_reply"]

MAX_ATTEMPTS = 3

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_PHONE = re.compile(r"(?<![\w-])\+?\d[\d ()-]{7,}\d(?![\w-])")
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


def _has_phone(text: str) -> bool:
    for m in _PHONE.finditer(text):
        cand = m.group(0)
        digits = sum(c.isdigit() for c in cand)
        if _DATE.fullmatch(cand) or digits < 8:
            continue
        if cand.startswith("+") or " " in cand or "(" in cand or digits >= 11 or cand.count("-") >= 2:
            return True
    return False


_PROMISES = (
    "compensation",
    "voucher",
    "coupon",
    "gift card",
    "free of charge",
    "guarantee",
    "赔偿",
    "补偿",
    "优惠券",
    "代金券",
    "免费",
    "保证",
)


class CustomerMessage(Message):
    """A customer's message with its detected language (and earlier turns of the conversation, if any)."""

    text: str = Field(description="What the customer wrote.")
    language: str = Field(default="", description="ISO 639-1 code; detected when empty.")
    history: list[str] = Field(default_factory=list, description="Earlier turns, oldest first ('customer: ...').")

    def to_prompt(self) -> str:
        lang = LANGUAGE_NAMES.get(self.language, self.language)
        head = f"Customer message (reply in {lang}):"
        if self.history:
            head = "Conversation so far:\n" + "\n".join(self.history) + "\n\n" + head
        return f"{head}\n{self.text}"


class SupportDraft(SupportReply):
    """A ``SupportReply`` with the customer's language attached by the workflow (not by the model)."""

    customer_language: str = ""


class GuardVerdict(Message):
    """The guard's decision on a support reply, carrying the reply itself and the customer's language."""

    verdict: str = Field(description="approve, revise or escalate")
    issues: list[str] = Field(default_factory=list)
    answer: str = ""
    language: str = Field(default="", description="The customer's language (ISO 639-1).")
    actions_taken: list[str] = Field(default_factory=list)

    def to_prompt(self) -> str:
        return "Your reply was NOT sent to the customer. Fix these problems and answer again:\n- " + "\n- ".join(
            self.issues or ["(unspecified)"]
        )


class SupportOutcome(Message):
    """What the customer gets: the approved reply, or a holding message when a human takes over."""

    reply: str = Field(description="The text to send to the customer, in their language.")
    language: str
    escalated: bool = False
    ticket_id: int | None = None
    reason: str = ""
    actions_taken: list[str] = Field(default_factory=list)


_LATIN_SCRIPT = ("en", "fr", "de", "es")
"""Languages told apart by their common words (``detect_language``); any other code is told by its script."""


def check_reply(reply: SupportReply, language: str, pii: list[str]) -> list[str]:
    """The guard's checks on ``reply`` for a customer who wrote in ``language``; each problem as a line fit
    to show the model (empty list = approve)."""
    answer = reply.answer.strip()
    issues: list[str] = []
    if not answer:
        return ["the answer is empty"]
    if _EMAIL.search(answer) or any(p in answer for p in pii if "@" in p):
        issues.append("the answer contains an email address: remove it")
    if _has_phone(answer) or any(p in answer for p in pii if p.startswith("+")):
        issues.append("the answer contains a phone number: remove it")
    if any(p in answer for p in pii if "@" not in p and not p.startswith("+")):
        issues.append("the answer contains a customer's street address: remove it")
    if _wrong_language(answer, language):
        if language == "zh":
            issues.append("the customer wrote in Chinese: answer in Chinese (简体中文)")
        else:
            name = LANGUAGE_NAMES.get(language, language)
            issues.append(f"the customer wrote in {name}: answer in that language")
    low = answer.lower()
    promised = [p for p in _PROMISES if p in low]
    if promised:
        issues.append(f"the answer promises something outside the shop's policy ({', '.join(promised)})")
    return issues


def _wrong_language(answer: str, language: str) -> bool:
    got = detect_language(answer)
    if language in LANGUAGE_NAMES and language not in _LATIN_SCRIPT:  # zh, ja, ko, ru, ar: told by script
        return got != language
    # a Latin-script language (or one detect_language does not know): Latin words, and the right ones if known
    if got not in _LATIN_SCRIPT or latin_word_evidence(answer) == 0:
        return True
    return language in _LATIN_SCRIPT and got != language


_HOLDING = {
    "zh": "您好，您的问题已转交人工客服处理（工单号 #{ticket}），我们会尽快与您联系。",
    "en": "Thank you for your patience. A member of our support team will take over your case (ticket #{ticket}).",
    "ja": "お待たせして申し訳ございません。担当スタッフがお問い合わせを引き継ぎます（チケット番号 #{ticket}）。",
    "ko": "기다려 주셔서 감사합니다. 담당 상담원이 고객님의 문의를 이어서 처리해 드리겠습니다 (티켓 번호 #{ticket}).",
    "ru": "Спасибо за терпение. Ваше обращение передано сотруднику службы поддержки (заявка #{ticket}).",
    "fr": "Merci de votre patience. Un membre de notre équipe d'assistance va prendre en charge votre demande "
    "(ticket #{ticket}).",
    "de": "Vielen Dank für Ihre Geduld. Ein Mitarbeiter unseres Support-Teams übernimmt Ihr Anliegen "
    "(Ticket #{ticket}).",
    "es": "Gracias por su paciencia. Un miembro de nuestro equipo de soporte se hará cargo de su caso "
    "(ticket #{ticket}).",
}
"""Holding messages by customer language; a language without one gets the English text."""


def _attach_language(inputs: Sequence[Message], out: Message) -> Message:
    """Copy the customer's language from the support agent's input (the customer's message, or the guard's
    verdict on a revision) into its reply, so the guard checks against it."""
    if not isinstance(out, SupportDraft):
        return out
    for m in reversed(inputs):
        lang = getattr(m, "language", "") if isinstance(m, (CustomerMessage, GuardVerdict)) else ""
        if lang:
            return out.model_copy(update={"customer_language": lang})
    return out


def build_support(model: ChatModel | None = None, *, shop: Shop | None = None) -> Workflow:
    """Build the ``support`` workflow over ``shop`` (default: the demo shop at ``default_shop_path()``)."""
    s = shop if shop is not None else Shop()

    def intake(msg: UserInput | CustomerMessage) -> CustomerMessage:
        if isinstance(msg, CustomerMessage):
            return msg if msg.language else msg.model_copy(update={"language": detect_language(msg.text)})
        return CustomerMessage(text=msg.text, language=detect_language(msg.text))

    def make_guard(lang: str) -> Any:
        def guard(reply: SupportDraft) -> GuardVerdict:
            customer = reply.customer_language or lang  # the branch's language only if the workflow lost it
            issues = check_reply(reply, customer, s.pii_strings())
            verdict = "escalate" if reply.escalate and not issues else ("revise" if issues else "approve")
            return GuardVerdict(
                verdict=verdict,
                issues=issues,
                answer=reply.answer,
                language=customer,
                actions_taken=list(reply.actions_taken),
            )

        guard.__name__ = f"guard_{lang}"
        return guard

    def reply(v: GuardVerdict) -> SupportOutcome:
        return SupportOutcome(reply=v.answer, language=v.language, actions_taken=v.actions_taken)

    def escalate(v: GuardVerdict) -> SupportOutcome:
        reason = "agent asked for a human" if v.verdict == "escalate" else "; ".join(v.issues) or "unresolved"
        # Idempotent on the content: a resumed or replayed run finds the same ticket instead of opening another.
        key = hashlib.sha256(f"{v.language}\n{v.answer}\n{reason}".encode()).hexdigest()[:32]
        ticket = s.escalate(reason, v.answer[:500], lang=v.language, key=key)
        text = _HOLDING.get(v.language, _HOLDING["en"]).format(ticket=ticket.ticket_id)
        return SupportOutcome(
            reply=text,
            language=v.language,
            escalated=True,
            ticket_id=ticket.ticket_id,
            reason=reason,
            actions_taken=v.actions_taken,
        )

    wf = Workflow("support", model=model, description="Customer support over the demo shop, zh/en, with a guard.")
    wf.add_node("intake", intake)
    for lang in ("zh", "en"):
        agent = support_role(
            None, shop=s, lang=lang, name=f"support-{lang}", result_type=SupportDraft, enrich=_attach_language
        )
        wf.add_node(agent, max_visits=MAX_ATTEMPTS, on_exhausted="escalate")
        wf.add_node(f"guard-{lang}", make_guard(lang))
    wf.add_node("reply", reply, join="any")
    wf.add_node("escalate", escalate, join="any")
    wf.add_edge("intake", "support-zh", condition=lambda m: m.language == "zh", label="zh")
    wf.add_edge("intake", "support-en", condition=lambda m: m.language != "zh", label="other")
    for lang in ("zh", "en"):
        wf.add_edge(f"support-{lang}", f"guard-{lang}")
        wf.add_edge(f"guard-{lang}", f"support-{lang}", condition=lambda v: v.verdict == "revise", label="revise")
        wf.add_edge(f"guard-{lang}", "reply", condition=lambda v: v.verdict == "approve", label="approve")
        wf.add_edge(f"guard-{lang}", "escalate", condition=lambda v: v.verdict == "escalate", label="escalate")
    return wf.set_entry("intake")


@workflow("support", description="E-commerce support (zh/en) with shop tools, a policy/PII guard and escalation.")
def _support(model: ChatModel) -> Workflow:
    return build_support(model)
