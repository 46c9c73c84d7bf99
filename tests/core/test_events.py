"""Event encoding: what the store keeps is the payload as pydantic would encode it, whichever encoder ran."""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tq_agents import TextMessage
from tq_agents.events import (
    MessageEmitted,
    NodeFinished,
    NodeStarted,
    ToolCallStarted,
    _response_bytes,
    _unset,
    event_from_stored,
)
from tq_agents.models.base import ChatMessage, ChatResponse, Usage

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _stored(ev: Any) -> Any:
    return json.loads(ev.payload_json())


@settings(max_examples=200, deadline=None)
@given(
    arguments=st.dictionaries(st.text(max_size=8), json_values | st.floats(allow_nan=False), max_size=5),
    text=st.text(),
    duration=st.floats(min_value=0, max_value=1e9),
    ids=st.lists(st.text(max_size=30), max_size=3),
)
def test_payloads_store_what_pydantic_would(
    arguments: dict[str, Any], text: str, duration: float, ids: list[str]
) -> None:
    # ToolCallStarted holds user values (pydantic encodes them: inf stays Infinity, not null); NodeFinished holds the
    # scheduler's own (the faster plain-JSON encoder)
    events = [
        ToolCallStarted(run_id="r", node="n", turn_id="n:1", key="0:c", tool="t", arguments=arguments),
        NodeFinished(
            run_id="r",
            node=text,
            turn_id="n:1",
            status="failed",
            reason=text,
            outputs=ids,
            routed=[[text, i] for i in ids],
            prompt_tokens=2**40,
            duration_s=duration,
        ),
    ]
    for ev in events:
        assert _stored(ev) == json.loads(pydantic_core.to_json(ev.payload()))
        back = event_from_stored("r", 1, ev.ts, ev.kind, _stored(ev))
        assert back is not None and back.payload() == ev.payload()


class Color(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        Color.RED,  # a str subclass
        datetime(2026, 11, 29, 12, 0, tzinfo=UTC),  # pydantic's format ("Z"), not orjson's ("+00:00")
        TextMessage(text="inside a payload"),  # a model
        2**70,  # beyond 64 bits
        (1, "a"),  # a tuple
    ],
)
def test_values_that_are_not_plain_json_are_encoded_by_pydantic(value: Any) -> None:
    ev = ToolCallStarted(run_id="r", node="n", turn_id="n:1", key="0:c", tool="t", arguments={"v": value})
    assert ev.payload_json() == pydantic_core.to_json(ev.payload())


def test_unencodable_payload_is_a_pydantic_error() -> None:
    ev = NodeStarted(run_id="r", node="n", turn_id="n:1", visit=1, inputs=[object()])  # type: ignore[list-item]
    with pytest.raises(pydantic_core.PydanticSerializationError):
        ev.payload_json()


def test_message_event_round_trips_without_repeating_the_run_id() -> None:
    msg = TextMessage(text="hi", source="a", run_id="r")
    ev = MessageEmitted(run_id="r", node="a", turn_id="a:1", message=msg)
    stored = _stored(ev)
    assert "run_id" not in stored["message"] and stored["type"] == "TextMessage"
    back = event_from_stored("r", 1, ev.ts, ev.kind, stored)
    assert isinstance(back, MessageEmitted) and back.message == msg
    other = MessageEmitted(run_id="r", node="a", turn_id="a:1", message=msg.model_copy(update={"run_id": "x"}))
    assert _stored(other)["message"]["run_id"] == "x"


def _pydantic_response_bytes(r: ChatResponse) -> bytes:
    return ChatResponse.__pydantic_serializer__.to_json(r, exclude=_unset(r))


@settings(max_examples=300, deadline=None)
@given(
    content=st.none() | st.text(),
    model=st.text(max_size=20),
    counts=st.tuples(*[st.integers(0, 2**63 - 1)] * 3),
)
def test_plain_response_is_stored_as_pydantic_writes_it(
    content: str | None, model: str, counts: tuple[int, int, int]
) -> None:
    usage = Usage(prompt_tokens=counts[0], completion_tokens=counts[1], cached_prompt_tokens=counts[2])
    r = ChatResponse(message=ChatMessage(role="assistant", content=content), usage=usage, model=model)
    assert _response_bytes(r) == _pydantic_response_bytes(r)


class _Str(str):
    pass


class _Response(ChatResponse):
    extra_field: str = "kept"


@pytest.mark.parametrize(
    "response",
    [
        ChatResponse(message=ChatMessage(role="assistant", content="\ud800 lone surrogate")),
        ChatResponse(message=ChatMessage(role="assistant", content="ok"), model=_Str("a str subclass")),
        ChatResponse(message=ChatMessage(role="assistant", content="ok"), usage=Usage(prompt_tokens=2**70)),
        ChatResponse(
            message=ChatMessage(role="assistant", content="ok"),
            usage=Usage.model_construct(prompt_tokens=float("inf"), completion_tokens=1, cached_prompt_tokens=0),
        ),
        _Response(message=ChatMessage(role="assistant", content="a subclass with its own field")),
        ChatResponse(message=ChatMessage(role="assistant", content="x", reasoning_content="not plain")),
        ChatResponse(message=ChatMessage(role="assistant", content="x"), finish_reason="length"),
    ],
)
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # the inf-in-an-int-field case: expected
def test_responses_that_are_not_plain_are_stored_by_pydantic(response: ChatResponse) -> None:
    try:
        expected: bytes | type[Exception] = _pydantic_response_bytes(response)
    except pydantic_core.PydanticSerializationError:
        expected = pydantic_core.PydanticSerializationError
    if isinstance(expected, bytes):
        assert _response_bytes(response) == expected
    else:
        with pytest.raises(expected):
            _response_bytes(response)


class _Measured(TextMessage):
    value: float = 0.0


def test_a_message_with_non_finite_floats_is_stored_as_it_loads_back() -> None:
    for run_id in ("r1", "other"):  # the message's run id is the event's (left out), or not
        msg = _Measured(text="x", value=float("inf"), run_id="r1", source="n")
        ev = MessageEmitted(run_id=run_id, node="n", turn_id="n:1", message=msg)
        stored = json.loads(ev.payload_json())  # the store's loader: json.loads reads Infinity/NaN back
        back = event_from_stored(run_id, 1, 0.0, "MessageEmitted", stored)
        assert isinstance(back, MessageEmitted) and back.message.value == math.inf  # type: ignore[attr-defined]
        assert back.message == msg
        nan = MessageEmitted(run_id=run_id, node="n", turn_id="n:1", message=msg.model_copy(update={"value": math.nan}))
        back = event_from_stored(run_id, 1, 0.0, "MessageEmitted", json.loads(nan.payload_json()))
        assert math.isnan(back.message.value)  # type: ignore[union-attr]


def _strict(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_event_to_json_is_strict_json_with_non_finite_floats_as_strings() -> None:
    msg = _Measured(text="x", value=float("inf"), run_id="r1")
    emitted = MessageEmitted(run_id="r1", node="n", turn_id="n:1", message=msg)
    started = ToolCallStarted(
        run_id="r1", node="n", turn_id="n:1", key="0:call_0", tool="t", arguments={"a": math.nan, "b": -math.inf}
    )
    assert _strict(emitted.to_json())["message"]["value"] == "Infinity"
    assert _strict(started.to_json())["arguments"] == {"a": "NaN", "b": "-Infinity"}
    assert started.to_dict()["arguments"] == {"a": "NaN", "b": "-Infinity"}
    json.dumps(emitted.to_dict(), allow_nan=False)
    # a string that merely contains the words is left alone
    plain = ToolCallStarted(run_id="r1", node="n", turn_id="n:1", key="k", tool="t", arguments={"s": "NaN Infinity"})
    assert _strict(plain.to_json())["arguments"] == {"s": "NaN Infinity"}
    # the stored payload keeps the floats
    assert json.loads(started.payload_json())["arguments"]["b"] == -math.inf
