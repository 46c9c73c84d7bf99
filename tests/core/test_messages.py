"""Typed messages: registry, lossless JSON round-trip (hypothesis), payload schema."""

from __future__ import annotations

from datetime import UTC, datetime
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
