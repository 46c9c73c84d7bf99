"""Text helpers for translation and support: language detection, glossary, placeholder checks.

Plain functions (no model, no I/O) so workflows and guards can call them directly; ``text_tools()``
wraps the ones a model may call as tools.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tq_agents._tool import Tool

__all__ = [
    "DEFAULT_GLOSSARY",
    "LANGUAGE_NAMES",
    "GlossaryHit",
    "PlaceholderReport",
    "detect_language",
    "find_placeholders",
    "glossary_lookup",
    "latin_word_evidence",
    "markdown_outline",
    "placeholder_report",
    "text_tools",
]

LANGUAGE_NAMES: dict[str, str] = {
    "zh": "Chinese",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "ar": "Arabic",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
}

# A small e-commerce / software glossary (English term → Chinese term). Users pass their own.
DEFAULT_GLOSSARY: dict[str, str] = {
    "order": "订单",
    "refund": "退款",
    "shipping": "配送",
    "delivery": "送达",
    "tracking number": "运单号",
    "customer service": "客服",
    "return policy": "退货政策",
    "invoice": "发票",
    "warranty": "保修",
    "workflow": "工作流",
    "agent": "智能体",
    "sandbox": "沙箱",
    "tool call": "工具调用",
}

_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are was my your what when where how please order thank you it of to".split()),
    "fr": frozenset("le la les est et mon ma mes quand où comment merci commande vous je une des".split()),
    "de": frozenset("der die das ist und mein meine wann wo wie bitte danke bestellung ich nicht ein".split()),
    "es": frozenset("el la los las es y mi mis cuando donde cómo gracias pedido por favor yo una".split()),
}

# Placeholders that must survive translation byte for byte.
_PLACEHOLDER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\{\{[^{}\n]+\}\}"),  # {{ jinja }}
    re.compile(r"(?<!\{)\{[^\W\d][\w.\[\]]*(?::[^{}\n]*)?\}(?!\})"),  # {order_id} / {n:.2f}
    re.compile(r"%\([A-Za-z_][A-Za-z0-9_]*\)[sdif]|%[sdif]"),  # printf
    re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}"),  # ${VAR}
    re.compile(r"<[A-Za-z][A-Za-z0-9]*\s*/?>|</[A-Za-z][A-Za-z0-9]*>"),  # simple tags
)
_CODE_SPAN = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
_URL = re.compile(r"https?://[^\s)>\]]+")


def detect_language(text: str) -> str:
    """Guess the language of ``text`` as an ISO 639-1 code (``zh``, ``en``, ``ja``, ``ko``, ...).

    Script-based first (kana → ja, Hangul → ko, Han → zh, Cyrillic → ru, Arabic → ar), then stopwords
    for Latin-script text; ``en`` when nothing else fits. Code spans and URLs are ignored.
    """
    body = _URL.sub(" ", _CODE_SPAN.sub(" ", text))
    counts = {"han": 0, "kana": 0, "hangul": 0, "cyrillic": 0, "arabic": 0, "latin": 0}
    for ch in body:
        o = ord(ch)
        if 0x3040 <= o <= 0x30FF:
            counts["kana"] += 1
        elif 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF:
            counts["han"] += 1
        elif 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF:
            counts["hangul"] += 1
        elif 0x0400 <= o <= 0x04FF:
            counts["cyrillic"] += 1
        elif 0x0600 <= o <= 0x06FF:
            counts["arabic"] += 1
        elif ch.isalpha() and unicodedata.name(ch, "").startswith("LATIN"):
            counts["latin"] += 1
    if counts["kana"] > 0 and counts["kana"] * 5 >= counts["han"]:
        return "ja"
    if counts["hangul"] > 0 and counts["hangul"] >= counts["han"]:
        return "ko"
    # Han characters carry ~3x the information of a Latin letter: a few are enough to call it Chinese.
    if counts["han"] * 3 >= counts["latin"] and counts["han"] > 0:
        return "zh"
    if counts["cyrillic"] > counts["latin"]:
        return "ru"
    if counts["arabic"] > counts["latin"]:
        return "ar"
    words = re.findall(r"[^\W\d_]+", body.lower())
    best, best_hits = "en", 0
    for lang, stop in _STOPWORDS.items():
        hits = sum(1 for w in words if w in stop)
        if hits > best_hits:
            best, best_hits = lang, hits
    return best


def latin_word_evidence(text: str) -> int:
    """How many common function words of a Latin-script language (en, fr, de, es) ``text`` contains.

    Zero for text that is not written in one of those languages (or is not language at all).
    """
    words = re.findall(r"[^\W\d_]+", text.lower())
    return sum(1 for w in words if any(w in stop for stop in _STOPWORDS.values()))


_MD_LINE = re.compile(r"^\s*(#{1,6}\s|[-*+]\s|\d+[.)]\s|>\s?|```|\|)")


def markdown_outline(text: str) -> list[str]:
    """The Markdown skeleton of ``text``: the block marker of each structural line (``#``, ``-``, ``1.``,
    ``>``, fences, table rows), in order. A faithful translation keeps it unchanged."""
    out: list[str] = []
    for line in text.splitlines():
        m = _MD_LINE.match(line)
        if m:
            marker = m.group(1).strip()
            out.append("1." if marker[:-1].isdigit() else marker)
    return out


def find_placeholders(text: str) -> list[str]:
    """Every placeholder, inline code span and URL in ``text``, in order: what a translation must keep verbatim."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []

    def add(m: re.Match[str]) -> None:
        s, e = m.span()
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        found.append((s, m.group(0)))

    for m in _CODE_SPAN.finditer(text):
        add(m)
    for m in _URL.finditer(text):
        add(m)
    for pat in _PLACEHOLDER_PATTERNS:
        for m in pat.finditer(text):
            add(m)
    return [t for _, t in sorted(found)]


class PlaceholderReport(BaseModel):
    """Which protected spans of the source are missing from (or were invented in) a translation."""

    ok: bool = Field(description="True when every placeholder of the source appears in the target as often.")
    missing: list[str] = Field(default_factory=list, description="In the source, not (often enough) in the target.")
    extra: list[str] = Field(default_factory=list, description="In the target, not in the source.")

    def describe(self) -> str:
        """One line fit to show a model or a reviewer."""
        if self.ok:
            return "all placeholders, code spans and URLs kept"
        parts = []
        if self.missing:
            parts.append("missing: " + ", ".join(self.missing))
        if self.extra:
            parts.append("unexpected: " + ", ".join(self.extra))
        return "; ".join(parts)


def placeholder_report(source: str, target: str) -> PlaceholderReport:
    """Compare the protected spans of ``source`` and ``target`` as multisets."""
    src, tgt = find_placeholders(source), find_placeholders(target)
    missing: list[str] = []
    remaining = list(tgt)
    for p in src:
        if p in remaining:
            remaining.remove(p)
        else:
            missing.append(p)
    extra = [p for p in remaining if p not in src]
    return PlaceholderReport(ok=not missing and not extra, missing=missing, extra=extra)


class GlossaryHit(BaseModel):
    """A glossary term found in a text, with the translation it must use."""

    source_term: str
    target_term: str
    source_lang: str
    target_lang: str


def glossary_lookup(
    text: str,
    source_lang: str,
    target_lang: str,
    glossary: Mapping[str, str] | None = None,
) -> list[GlossaryHit]:
    """Glossary entries that occur in ``text``; the glossary maps English terms to Chinese terms.

    zh→en and en→zh are supported (the mapping is used in either direction); other pairs return ``[]``.
    """
    entries: Iterable[tuple[str, str]] = (glossary or DEFAULT_GLOSSARY).items()
    hits: list[GlossaryHit] = []
    low = text.lower()
    for en, zh in entries:
        if source_lang == "en" and target_lang == "zh":
            if re.search(rf"\b{re.escape(en.lower())}s?\b", low):
                hits.append(GlossaryHit(source_term=en, target_term=zh, source_lang="en", target_lang="zh"))
        elif source_lang == "zh" and target_lang == "en" and zh in text:
            hits.append(GlossaryHit(source_term=zh, target_term=en, source_lang="zh", target_lang="en"))
    return hits


def text_tools(glossary: Mapping[str, str] | None = None) -> list[Tool]:
    """The translator's tools: ``glossary`` (terms to use) and ``check_placeholders``."""
    from tq_agents._tool import tool

    terms = dict(glossary) if glossary is not None else dict(DEFAULT_GLOSSARY)

    @tool(name="glossary")
    def glossary_tool(text: str, source_language: str, target_language: str) -> list[dict[str, str]]:
        """Glossary terms that occur in the text, with the translation that must be used for each.

        Args:
            text: The source text.
            source_language: Language code of the source, e.g. "zh".
            target_language: Language code of the translation, e.g. "en".
        """
        hits = glossary_lookup(text, source_language, target_language, terms)
        return [{"term": h.source_term, "use": h.target_term} for h in hits]

    @tool
    def check_placeholders(source: str, translation: str) -> dict[str, Any]:
        """Check that every placeholder, code span and URL of the source is kept verbatim in the translation.

        Args:
            source: The source text.
            translation: The translated text.
        """
        rep = placeholder_report(source, translation)
        return {**rep.model_dump(), "message": rep.describe()}

    return [glossary_tool, check_placeholders]
