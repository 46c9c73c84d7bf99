"""``translate-review``: translator ⇄ reviewer with glossary and placeholder checks (zh↔en and other pairs).

```
prepare ──▶ translator ──▶ check ──ok──▶ reviewer ──approve──▶ finish
               ▲   (≤3 visits) │ placeholders lost /      │
               └───────────────┴──── wrong language ◀─────┘ revise
```

* ``prepare`` detects the source language and picks the target: English for Chinese input, Chinese otherwise;
  a first line ``target: fr`` (or ``目标: en``) overrides it.
* ``translator`` uses the glossary tool and returns a ``Translation``; the workflow attaches the source text.
* ``check`` is deterministic: every placeholder (``{order_id}``, ``%s``, ``{{ x }}``), code span and URL of
  the source must survive verbatim, and the text must be in the target language. Failures go straight back.
* ``reviewer`` approves or asks for a revision; after three translator turns the best effort is reported.
* ``finish`` emits a ``FinalTranslation`` (the text, whether it was approved, open issues).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field
from tq_agents.tools.text import (
    LANGUAGE_NAMES,
    detect_language,
    find_placeholders,
    glossary_lookup,
    markdown_outline,
    placeholder_report,
)
from tq_agents.workflows._registry import workflow

from tq_agents.errors import UserError
from tq_agents.graph import Workflow
from tq_agents.messages import Message, Review, Translation, UserInput
from tq_agents.roles import reviewer as reviewer_role
from tq_agents.roles import translator as translator_role

if TYPE_CHECKING:
    from tq_agents.models.base import ChatModel

__all__ = [
    "FinalTranslation",
    "TranslationCheck",
    "TranslationDraft",
    "TranslationReview",
    "TranslationTask",
    "build_translate_review",
]

MAX_ROUNDS = 3
_TARGET_LINE = re.compile(r"^\s*(?:target|to|目标|译为)\s*[:：]\s*([a-zA-Z]{2})[ \t]*(?:\r?\n|$)", re.IGNORECASE)


class TranslationTask(Message):
    """What to translate, from which language into which."""

    text: str
    source_language: str
    target_language: str

    def to_prompt(self) -> str:
        src = LANGUAGE_NAMES.get(self.source_language, self.source_language)
        tgt = LANGUAGE_NAMES.get(self.target_language, self.target_language)
        return (
            f"Translate from {src} ({self.source_language}) into {tgt} ({self.target_language}). "
            f"Keep placeholders, code and URLs exactly.\n\n{self.text}"
        )


class TranslationDraft(Translation):
    """A ``Translation`` with the task it answers attached by the workflow (not by the model)."""

    source_text: str = ""
    required_target: str = ""


class TranslationCheck(Message):
    """The deterministic check of a draft: placeholders kept, right language. Carries the draft."""

    ok: bool
    issues: list[str] = Field(default_factory=list)
    draft: dict[str, object] = Field(default_factory=dict, description="The TranslationDraft payload.")

    def to_prompt(self) -> str:
        if self.ok:
            d = self.draft
            return (
                f"Source ({d.get('source_language')}):\n{d.get('source_text')}\n\n"
                f"Translation ({d.get('required_target')}):\n{d.get('text')}\n\n"
                f"Automatic checks passed (placeholders kept, target language). Glossary terms used: "
                f"{', '.join(map(str, d.get('glossary_terms') or [])) or 'none'}."
            )
        return "Your translation failed the automatic checks; fix them:\n- " + "\n- ".join(self.issues)


class TranslationReview(Review):
    """A reviewer's verdict with the draft it judged attached by the workflow."""

    draft: dict[str, object] = Field(default_factory=dict, description="The TranslationDraft payload.")

    def to_prompt(self) -> str:
        return self.revision_request()


class FinalTranslation(Translation):
    """The outcome: the last translation, whether the reviewer approved it, and what is still open."""

    source_text: str = ""
    approved: bool = False
    open_issues: list[str] = Field(default_factory=list)


def _task_of(inputs: Sequence[Message]) -> tuple[str, str, str] | None:
    for m in reversed(inputs):
        if isinstance(m, TranslationTask):
            return m.text, m.source_language, m.target_language
        draft = getattr(m, "draft", None)
        if isinstance(draft, dict) and draft.get("source_text") is not None:
            return str(draft["source_text"]), str(draft.get("source_language", "")), str(draft["required_target"])
    return None


def _attach_task(inputs: Sequence[Message], out: Message) -> Message:
    task = _task_of(inputs)
    if task is None or not isinstance(out, TranslationDraft):
        return out
    text, _src, tgt = task
    return out.model_copy(update={"source_text": text, "required_target": tgt})


def _attach_draft(inputs: Sequence[Message], out: Message) -> Message:
    for m in reversed(inputs):
        if isinstance(m, TranslationCheck):
            return out.model_copy(update={"draft": m.draft})
    return out


def check_translation(draft: TranslationDraft) -> TranslationCheck:
    """Placeholders, code spans and URLs kept; text in the required target language; not empty."""
    issues: list[str] = []
    if not draft.text.strip():
        issues.append("the translation is empty")
    rep = placeholder_report(draft.source_text, draft.text)
    if not rep.ok:
        issues.append(f"placeholders/code/URLs must be kept verbatim — {rep.describe()}")
    if markdown_outline(draft.source_text) != markdown_outline(draft.text):
        issues.append(
            "keep the Markdown structure of the source (same headings, list items, quotes, code fences, table rows)"
        )
    target = draft.required_target or draft.target_language
    got = detect_language(draft.text) if draft.text.strip() else ""
    if target and got and got != target and (target == "zh" or got == "zh"):
        issues.append(f"the translation must be in {LANGUAGE_NAMES.get(target, target)}, not {got}")
    src = detect_language(draft.source_text) if draft.source_text else ""
    if src and target:
        prose = draft.text
        for span in find_placeholders(prose):  # `{order_id}` does not count as using the term "order"
            prose = prose.replace(span, " ")
        for hit in glossary_lookup(draft.source_text, src, target):
            if not re.search(rf"(?<!\w){re.escape(hit.target_term.lower())}", prose.lower()):
                issues.append(f"glossary: translate '{hit.source_term}' as '{hit.target_term}'")
    return TranslationCheck(ok=not issues, issues=issues, draft=draft.payload())


def build_translate_review(model: ChatModel | None = None, *, glossary: dict[str, str] | None = None) -> Workflow:
    """Build the ``translate-review`` workflow (glossary: English term → Chinese term)."""

    def prepare(msg: UserInput | TranslationTask) -> TranslationTask:
        if isinstance(msg, TranslationTask):
            return msg
        text, target = msg.text, ""
        m = _TARGET_LINE.match(text)
        if m:
            target, text = m.group(1).lower(), text[m.end() :]
        if not text.strip():  # (the turns would be spent translating nothing)
            raise UserError(
                "nothing to translate: the input holds no text" + (" after its target line" if m else ""),
                hint="put the text to translate after the optional first line 'target: xx'",
            )
        source = detect_language(text)
        return TranslationTask(text=text, source_language=source, target_language=target or _default_target(source))

    def finish(v: TranslationReview | TranslationCheck) -> FinalTranslation:
        d = dict(v.draft)
        if isinstance(v, TranslationReview):
            approved = v.verdict == "approve"
            issues = [i.description for i in v.issues] if not approved else []
        else:  # the translator ran out of rounds while the automatic checks still failed
            approved, issues = False, list(v.issues)
        source_text = str(d.get("source_text", ""))
        return FinalTranslation(
            source_language=detect_language(source_text) if source_text else str(d.get("source_language", "")),
            target_language=str(d.get("required_target") or d.get("target_language", "")),
            text=str(d.get("text", "")),
            glossary_terms=[str(t) for t in d.get("glossary_terms") or []],  # type: ignore[union-attr]
            notes=str(d.get("notes", "")),
            source_text=source_text,
            approved=approved,
            open_issues=issues,
        )

    translator = translator_role(None, glossary=glossary, result_type=TranslationDraft, enrich=_attach_task)
    focus = (
        "You review a translation. Check meaning, fluency, terminology and that placeholders, code and URLs are "
        "unchanged (automatic checks already passed)."
    )
    reviewer = reviewer_role(None, focus=focus, result_type=TranslationReview, enrich=_attach_draft)
    wf = Workflow("translate-review", model=model, description="Translate (zh↔en, ...) with glossary, checks, review.")
    wf.add_node("prepare", prepare)
    wf.add_node(translator, max_visits=MAX_ROUNDS, on_exhausted="finish")
    wf.add_node("check", check_translation)
    wf.add_node(reviewer)
    wf.add_node("finish", finish, join="any")
    wf.add_edge("prepare", "translator")
    wf.add_edge("translator", "check")
    wf.add_edge("check", "reviewer", condition=lambda c: c.ok, label="ok")
    wf.add_edge("check", "translator", condition=lambda c: not c.ok, label="fix")
    wf.add_edge("reviewer", "translator", condition=lambda r: r.verdict == "revise", label="revise")
    wf.add_edge("reviewer", "finish", condition=lambda r: r.verdict == "approve", label="approve")
    return wf.set_entry("prepare")


def _default_target(source: str) -> str:
    return "en" if source == "zh" else "zh"


@workflow("translate-review", description="Translate zh↔en (and more) with glossary, placeholder checks and review.")
def _translate_review(model: ChatModel) -> Workflow:
    return build_translate_review(model)
