"""Typed messages exchanged by workflow nodes.

Every message is a pydantic v2 model deriving from ``Message``. User types are plain subclasses::

    class Ticket(Message):
        customer: str
        body: str

Each subclass registers itself under ``type_name`` (the class name unless set), so any message
round-trips losslessly through JSON with ``Message.from_json(m.to_json())`` — the run store relies on it.
Every serialisation of a message agrees on two points that plain pydantic leaves open:

* a non-finite float is written as the JSON constants ``Infinity`` / ``-Infinity`` / ``NaN`` (not ``null``,
  which would not load back into a ``float`` field); Python's ``json.loads`` and pydantic read them back;
* a field with an alias (``from_: str = Field(alias="from")``) is stored under its field name by ``to_dict`` /
  ``to_json`` / ``payload`` and loads by field name or by alias; a model is shown and asked for the alias
  (``to_prompt``, ``payload_schema``), and its answer is parsed by alias.

The envelope fields (``id``, ``run_id``, ``source``, ``created_at``) are filled by the runtime; the
payload fields are what a model produces for a structured output type (see ``Message.payload_schema``).
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from tq_agents.errors import StoreError, UserError

__all__ = [
    "CodeResult",
    "Escalation",
    "FinalReport",
    "Message",
    "Plan",
    "PlanStep",
    "Review",
    "ReviewIssue",
    "SupportReply",
    "TextMessage",
    "Translation",
    "UserInput",
    "message_type",
    "message_types",
]

ENVELOPE_FIELDS = frozenset({"id", "run_id", "source", "created_at"})
"""Fields set by the runtime, not by the producer of the payload."""

RESERVED_KEYS = frozenset({"type"})
"""Keys that ``to_dict`` adds next to the fields (``"type"`` names the class), so no field may use them."""

_EXPECTED = 'a JSON object with a "type" field naming a Message class'
_BAD_STORED_HINT = "only pass what Message.to_dict()/to_json() produced; the stored message may be corrupt"

_REGISTRY: dict[str, type[Message]] = {}
_SCHEMA_CACHE: dict[type[Message], dict[str, Any]] = {}


class _Ids:
    """A random per-process prefix (from uuid4) and a counter; renewed in a forked child, so ids stay unique
    across processes without a uuid (or a getpid syscall) per message."""

    prefix = ""
    counter: Any = None

    @classmethod
    def renew(cls) -> None:
        cls.prefix, cls.counter = uuid.uuid4().hex[:16], itertools.count()


_Ids.renew()
os.register_at_fork(after_in_child=_Ids.renew)


def _new_id() -> str:
    """A unique id: the per-process prefix and a counter (cheaper than uuid4 on the hot path)."""
    return f"{_Ids.prefix}{next(_Ids.counter):08x}"


def _now() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """Base of every typed message. Subclass it to define your own message types.

    ``type_name`` (a ClassVar) is the key under which the class is registered for JSON round-trips;
    it defaults to the class name. Two different classes may not share one ``type_name``.
    """

    # constants: a non-finite float is stored as Infinity/NaN, which loads back (pydantic's default, null, does
    # not); populate_by_name: what to_dict() writes (field names) loads as well as what a model writes (aliases)
    # bytes fields as base64 in JSON (any bytes, not only UTF-8 text, round-trip through the log)
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=False,
        ser_json_inf_nan="constants",
        populate_by_name=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    type_name: ClassVar[str] = "Message"

    id: str = Field(default_factory=_new_id, description="Unique id of this message.")
    run_id: str | None = Field(default=None, description="Run that produced the message (set by the runtime).")
    source: str | None = Field(default=None, description="Node that produced it; 'user' for the run input.")
    created_at: datetime = Field(default_factory=_now, description="When it was created (UTC).")

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Register the subclass under its ``type_name``; refuse a taken name or a reserved field name."""
        super().__pydantic_init_subclass__(**kwargs)
        for fname, info in cls.model_fields.items():
            clash = {fname, info.alias, info.serialization_alias} & RESERVED_KEYS
            if clash:
                key = sorted(clash)[0]
                what = f"field {fname!r}" if fname == key else f"field {fname!r} (alias {key!r})"
                raise UserError(
                    f"message type {cls.__qualname__}: {what} uses the reserved name {key!r} "
                    f"(to_dict() stores the message type name under {key!r})",
                    hint=f"rename the field, e.g. `kind` or `{key}_`, in {cls.__qualname__}",
                )
        name = cls.__dict__.get("type_name", cls.__name__)
        cls.type_name = name
        prev = _REGISTRY.get(name)
        if (
            prev is not None
            and prev is not cls
            and (prev.__module__, prev.__qualname__)
            != (
                cls.__module__,
                cls.__qualname__,
            )
        ):
            raise UserError(
                f"message type name {name!r} is already used by {prev.__module__}.{prev.__qualname__}",
                hint=f"give {cls.__qualname__} its own name: `type_name: ClassVar[str] = '...'`",
            )
        _REGISTRY[name] = cls

    # ---- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with a ``"type"`` key naming the registered class (fields under their names; a
        non-finite float stays a float, which ``json.dumps`` writes as ``Infinity``/``NaN``)."""
        d = self.model_dump(mode="json")
        d["type"] = self.type_name
        return d

    def to_json(self) -> str:
        """Serialise to JSON (with the ``"type"`` key); ``Message.from_json`` restores the exact subclass."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Message:
        """Rebuild a message from ``to_dict`` output, choosing the subclass by its ``"type"`` key.

        Raises ``StoreError`` when ``data`` is not such a dict or names no registered class.
        """
        if not isinstance(data, dict):
            raise StoreError(
                f"cannot load a message: expected {_EXPECTED}, got {_describe(data)}", hint=_BAD_STORED_HINT
            )
        data = dict(data)
        if "type" not in data:
            raise StoreError(
                f'cannot load a message: no "type" field (expected {_EXPECTED}; got keys {sorted(map(str, data))})',
                hint=_BAD_STORED_HINT,
            )
        name = data.pop("type")
        cls = _REGISTRY.get(name) if isinstance(name, str) else None
        if cls is None:
            raise StoreError(
                f"unknown message type {name!r}",
                hint="import the module that defines this Message subclass before loading the run",
            )
        return cls.model_validate(data)

    @staticmethod
    def from_json(text: str | bytes) -> Message:
        """Inverse of ``to_json``; ``StoreError`` when ``text`` is not the JSON of a message."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StoreError(
                f"cannot load a message: expected {_EXPECTED}, got invalid JSON ({e})", hint=_BAD_STORED_HINT
            ) from e
        return Message.from_dict(data)

    # ---- payload (what a model writes) ----------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        """The fields other than the envelope (id, run_id, source, created_at), JSON-able."""
        return self.model_dump(mode="json", exclude=ENVELOPE_FIELDS)  # type: ignore[arg-type]

    def to_prompt(self) -> str:
        """Text of this message as shown to a model: the payload as compact JSON, fields under their aliases
        (the names ``payload_schema`` asks a model for)."""
        return json.dumps(
            self.model_dump(mode="json", by_alias=True, exclude=ENVELOPE_FIELDS),  # type: ignore[arg-type]
            ensure_ascii=False,
        )

    @classmethod
    def payload_schema(cls) -> dict[str, Any]:
        """JSON schema of the payload fields only — what a structured-output model must emit."""
        cached = _SCHEMA_CACHE.get(cls)
        if cached is not None:
            return cached
        schema = cls.model_json_schema()
        props = {k: v for k, v in schema.get("properties", {}).items() if k not in ENVELOPE_FIELDS}
        required = [r for r in schema.get("required", []) if r not in ENVELOPE_FIELDS]
        out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        out["additionalProperties"] = False
        if "$defs" in schema:
            out["$defs"] = schema["$defs"]
        if cls.__doc__:
            out["description"] = cls.__doc__.strip().splitlines()[0]
        _SCHEMA_CACHE[cls] = out
        return out

    @classmethod
    def from_payload(cls, payload: dict[str, Any], **envelope: Any) -> Message:
        """Build from payload fields (envelope keys in ``payload`` are ignored) plus envelope values."""
        data = {k: v for k, v in payload.items() if k not in ENVELOPE_FIELDS}
        data.update({k: v for k, v in envelope.items() if v is not None})
        return cls.model_validate(data)


def _describe(value: Any) -> str:
    """A short description of a value that is not a message dict: its type and (cut) repr."""
    return "None" if value is None else f"{type(value).__name__} {value!r:.60}"


def message_type(name: str) -> type[Message]:
    """The registered ``Message`` subclass named ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown message type {name!r}", hint=f"known: {', '.join(sorted(_REGISTRY))}") from None


def message_types() -> dict[str, type[Message]]:
    """All registered message types by ``type_name`` (a copy)."""
    return dict(_REGISTRY)


_REGISTRY["Message"] = Message


# ---- built-in types ---------------------------------------------------------------------------


class TextMessage(Message):
    """Free text. An agent whose output type is ``TextMessage`` answers in plain words."""

    text: str = Field(description="The text.")

    def to_prompt(self) -> str:
        """The text itself, as a model sees it."""
        return self.text


class UserInput(TextMessage):
    """The input given to a run (``source='user'``)."""


class PlanStep(BaseModel):
    """One step of a plan."""

    description: str = Field(description="What to do in this step.")
    acceptance_criteria: list[str] = Field(default_factory=list, description="How to tell the step is done.")
    role: str = Field(default="coder", description="Which role carries the step out (coder, translator, ...).")


class Plan(Message):
    """A plan: a goal and ordered steps, each with acceptance criteria and a role."""

    goal: str = Field(description="What the plan achieves.")
    steps: list[PlanStep] = Field(default_factory=list, description="Ordered steps.")


class CodeResult(Message):
    """Code the coder wrote and what happened when it ran in the sandbox."""

    files: dict[str, str] = Field(default_factory=dict, description="File name → content.")
    command: str = Field(default="", description="The command that was run.")
    exit_code: int | None = Field(default=None, description="Exit status; None if it did not run.")
    stdout: str = Field(default="", description="Standard output (possibly truncated).")
    stderr: str = Field(default="", description="Standard error (possibly truncated).")
    timed_out: bool = Field(default=False, description="True if the sandbox killed it at the time limit.")
    summary: str = Field(default="", description="What the code does, in a sentence or two.")


class Translation(Message):
    """A translation with the glossary terms applied."""

    source_language: str = Field(description="Language of the source text, e.g. 'zh' or 'en'.")
    target_language: str = Field(description="Language of the translation.")
    text: str = Field(description="The translated text.")
    glossary_terms: list[str] = Field(default_factory=list, description="Glossary terms applied.")
    notes: str = Field(default="", description="Translator's notes.")

    def to_prompt(self) -> str:
        """The translated text; the whole payload as JSON when there are translator's notes."""
        return self.text if not self.notes else json.dumps(self.payload(), ensure_ascii=False)


class ReviewIssue(BaseModel):
    """One problem found by a reviewer."""

    severity: Literal["low", "medium", "high", "critical"] = Field(description="How bad it is.")
    description: str = Field(description="What is wrong.")
    suggested_fix: str = Field(default="", description="How to fix it.")


class Review(Message):
    """A reviewer's verdict. ``revise`` sends the work back; ``approve`` lets it through."""

    verdict: Literal["approve", "revise"] = Field(description="approve or revise.")
    issues: list[ReviewIssue] = Field(default_factory=list, description="Problems found.")
    suggested_fix: str = Field(default="", description="Overall suggestion for the next revision.")

    def revision_request(self) -> str:
        """The verdict as an instruction to the author: the overall fix, then one line per issue."""
        lines = [f"The reviewer asks for a revision. {self.suggested_fix}".strip()]
        lines += [f"- [{i.severity}] {i.description} {i.suggested_fix}".rstrip() for i in self.issues]
        return "\n".join(lines)


class SupportReply(Message):
    """A reply to an e-commerce customer."""

    answer: str = Field(description="The reply to the customer, in the customer's language.")
    actions_taken: list[str] = Field(default_factory=list, description="Tool actions taken, in words.")
    escalate: bool = Field(default=False, description="True if a human must take over.")
    language: str = Field(default="", description="Language of the answer, e.g. 'zh' or 'en'.")


class FinalReport(Message):
    """The closing summary of a workflow."""

    summary: str = Field(description="What was done and the outcome.")
    approved: bool | None = Field(default=None, description="Whether the work was approved, if reviewed.")
    details: str = Field(default="", description="Anything else worth reporting.")


class Escalation(Message):
    """A hand-over to a human queue."""

    reason: str = Field(description="Why a human must take over.")
    customer_message: str = Field(default="", description="The customer's original message.")
    queue: str = Field(default="human", description="Which human queue receives it.")
