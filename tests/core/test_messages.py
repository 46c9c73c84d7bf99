"""Typed messages: registry, lossless JSON round-trip (hypothesis), payload schema."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from tq_agents import (
    CodeResult,
    Escalation,
    FinalReport,
    Message,
    Plan,
    PlanStep,
    Review,
    ReviewIssue,
    SupportReply,
    TextMessage,
    Translation,
    UserError,
    UserInput,
)
from tq_agents.messages import message_type


class Ticket(Message):
    """A user-defined message type."""

    customer: str
    priority: int = 0
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, float] = Field(default_factory=dict)


text = st.text(max_size=30)
envelope = {
    "run_id": st.none() | st.text(min_size=1, max_size=10),
    "source": st.none() | st.text(max_size=10),
    "created_at": st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
}
issues = st.builds(ReviewIssue, severity=st.sampled_from(["low", "medium", "high", "critical"]), description=text)
steps = st.builds(PlanStep, description=text, acceptance_criteria=st.lists(text, max_size=3), role=text)
messages = st.one_of(
    st.builds(TextMessage, text=text, **envelope),
    st.builds(UserInput, text=text, **envelope),
    st.builds(Plan, goal=text, steps=st.lists(steps, max_size=3), **envelope),
    st.builds(
        CodeResult,
        files=st.dictionaries(text, text, max_size=3),
        exit_code=st.none() | st.integers(-255, 255),
        stdout=text,
        timed_out=st.booleans(),
        **envelope,
    ),
    st.builds(Translation, source_language=text, target_language=text, text=text, glossary_terms=st.lists(text)),
    st.builds(Review, verdict=st.sampled_from(["approve", "revise"]), issues=st.lists(issues, max_size=3)),
    st.builds(SupportReply, answer=text, actions_taken=st.lists(text, max_size=3), escalate=st.booleans()),
    st.builds(FinalReport, summary=text, approved=st.none() | st.booleans()),
    st.builds(Escalation, reason=text, customer_message=text),
    st.builds(
        Ticket,
        customer=text,
        priority=st.integers(),
        tags=st.lists(text, max_size=3),
        meta=st.dictionaries(text, st.floats(allow_nan=False, allow_infinity=False), max_size=3),
        **envelope,
    ),
)


@settings(max_examples=150, deadline=None)
@given(messages)
def test_json_round_trip_is_lossless(msg: Message) -> None:
    back = Message.from_json(msg.to_json())
    assert type(back) is type(msg)
    assert back == msg
    assert back.to_json() == msg.to_json()


def test_registry_and_type_key() -> None:
    t = Ticket(customer="ann")
    assert t.to_dict()["type"] == "Ticket"
    assert message_type("Ticket") is Ticket
    assert message_type("Review") is Review
    assert isinstance(UserInput(text="x"), TextMessage)


def test_duplicate_type_name_is_refused() -> None:
    with pytest.raises(UserError, match="already used"):

        class Other(Message):
            type_name: ClassVar[str] = "Ticket"


def test_unknown_type_is_a_clear_error() -> None:
    from tq_agents import StoreError

    with pytest.raises(StoreError, match="unknown message type 'Nope'"):
        Message.from_dict({"type": "Nope"})


def test_payload_schema_excludes_envelope() -> None:
    schema = Review.payload_schema()
    assert set(schema["properties"]) == {"verdict", "issues", "suggested_fix"}
    assert schema["required"] == ["verdict"]
    assert "ReviewIssue" in schema["$defs"]
    r = Review.from_payload({"verdict": "revise", "id": "ignored"}, source="rev", run_id="r1")
    assert r.source == "rev" and r.run_id == "r1" and r.id != "ignored"
    assert r.payload() == {"verdict": "revise", "issues": [], "suggested_fix": ""}
    assert TextMessage(text="hi").to_prompt() == "hi"


class AliasedTicket(Message):
    """A message whose field is named by a Python keyword, through an alias."""

    from_: str = Field(alias="from")
    cc: list[str] = Field(default_factory=list, alias="carbon-copy")


def test_aliased_fields_round_trip_and_load_by_name_or_alias() -> None:
    t = AliasedTicket(**{"from": "bob", "carbon-copy": ["ann"]}, run_id="r1", source="a")
    assert Message.from_dict(t.to_dict()) == t
    assert Message.from_json(t.to_json()) == t
    assert AliasedTicket.from_payload(t.payload(), source="a", run_id="r1", id=t.id, created_at=t.created_at) == t
    assert AliasedTicket.from_payload({"from": "bob", "carbon-copy": ["ann"]}).from_ == "bob"  # a model's answer
    assert AliasedTicket(from_="x").from_ == "x"
    # what a model is shown is what it is asked to write: the schema's (alias) names
    assert set(AliasedTicket.payload_schema()["properties"]) == {"from", "carbon-copy"}
    assert json.loads(t.to_prompt()) == {"from": "bob", "carbon-copy": ["ann"]}


def test_non_finite_floats_round_trip_through_every_serialisation() -> None:
    t = Ticket(customer="c", meta={"inf": float("inf"), "ninf": float("-inf"), "nan": float("nan")})
    for text in (t.to_json(), t.model_dump_json(), t.__pydantic_serializer__.to_json(t).decode()):
        assert '"meta":{"inf":Infinity,"ninf":-Infinity,"nan":NaN}' in text.replace(" ", "")
        data = json.loads(text)  # as the run store loads a payload
        back = Message.from_dict(data) if "type" in data else Ticket.model_validate(data)
        assert isinstance(back, Ticket)
        assert back.meta["inf"] == math.inf and back.meta["ninf"] == -math.inf and math.isnan(back.meta["nan"])
    assert "Infinity" in t.to_prompt()


def test_bytes_fields_round_trip_through_a_stored_run_whatever_the_bytes(tmp_path: Path) -> None:
    import asyncio

    from tq_agents import SQLiteRunStore, Workflow, replay
    from tq_agents._record import RunRecord

    class Blob(Message):
        data: bytes

    raw = bytes(range(256))  # not UTF-8
    blob = Blob(data=raw)
    assert Message.from_json(blob.to_json()) == blob
    wf = Workflow("blob").add_node("f", lambda m: Blob(data=raw))
    store = SQLiteRunStore(tmp_path / "runs.sqlite")
    res = wf.run_sync("go", store=store)
    assert res.status == "completed", res.reason
    (out,) = RunRecord.load(store, res.run_id).turns["f:1"].outputs
    assert isinstance(out, Blob) and out.data == raw
    assert not asyncio.run(replay(res.run_id, wf, store)).diverged
