"""The compact JSON-schema checker behind parse(tools=...): each keyword, and agreement with pydantic.

The agreement test builds real tools with the project's ``@tool`` (pydantic-generated schemas) and checks,
over generated argument mappings, that every mapping ``check`` accepts is accepted by the tool's own pydantic
model: a call that passes parse's schema check never fails the tool's validation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError

from tq_agents import tool
from tq_agents.models.qwen import _parse as parse_module
from tq_agents.models.qwen import parse
from tq_agents.models.qwen._schema import check, coerce, text_to_value


@pytest.fixture(autouse=True)
def _raise_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", True)


# --------------------------------------------------------------------------------------------- keywords


@pytest.mark.parametrize(
    ("schema", "good", "bad", "fragment"),
    [
        ({"type": "integer"}, 3, 3.5, "expected integer, got number 3.5"),
        ({"type": "integer"}, 3.0, True, "expected integer, got boolean true"),
        ({"type": "number"}, 2, "2", "expected number, got string '2'"),
        ({"type": ["string", "null"]}, None, 1, "expected string or null"),
        ({"enum": ["a", 1]}, 1, True, "not one of the allowed values"),
        ({"const": "x"}, "x", "y", "must be 'x'"),
        ({"type": "string", "minLength": 2}, "ab", "a", "at least 2 characters"),
        ({"type": "string", "maxLength": 2}, "ab", "abc", "at most 2 characters"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "abc", "ab1", "must match the pattern"),
        ({"type": "integer", "minimum": 1}, 1, 0, "at least 1"),
        ({"type": "integer", "exclusiveMinimum": 1}, 2, 1, "greater than 1"),
        ({"type": "number", "exclusiveMaximum": 1}, 0.5, 1, "less than 1"),
        ({"type": "number", "multipleOf": 0.5}, 1.5, 1.2, "multiple of 0.5"),
        ({"type": "array", "minItems": 1}, [1], [], "at least 1 items"),
        ({"type": "array", "maxItems": 1}, [1], [1, 2], "at most 1 items"),
        ({"type": "array", "uniqueItems": True}, [1, True], [1, 1], "must not repeat"),
        (
            {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
            ["a", 1],
            ["a", "b"],
            "'[1]'",
        ),
        ({"type": "object", "required": ["a"]}, {"a": 1}, {}, "'a' is required"),
        ({"type": "object", "minProperties": 1}, {"a": 1}, {}, "at least 1 entries"),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"a": 1},
            {"a": "x"},
            "'a': expected integer",
        ),
        ({"allOf": [{"type": "integer"}, {"minimum": 3}]}, 3, 2, "at least 3"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, None, "x", "expected integer or null"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1.5, 1, "more than one"),
        (False, None, None, "is not allowed"),
    ],
)
def test_keywords(schema: Any, good: Any, bad: Any, fragment: str) -> None:
    if schema is not False:
        assert check(good, schema) == []
    errors = check(bad, schema)
    assert errors and fragment in errors[0], errors


def test_refs_into_defs_and_definitions() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/A"}, "b": {"$ref": "#/definitions/B", "description": "sibling"}},
        "$defs": {"A": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}},
        "definitions": {"B": {"type": "string"}},
    }
    assert check({"a": {"n": 1}, "b": "x"}, schema) == []
    assert check({"a": {}, "b": "x"}, schema) == ["'a.n' is required but missing"]
    assert "'b': expected string" in check({"a": {"n": 1}, "b": 2}, schema)[0]
    # an unresolvable or self-referencing $ref constrains nothing and does not loop
    assert check(1, {"$ref": "#/$defs/Nope"}) == []
    assert check(1, {"$ref": "#", "type": "integer"}) == []


def test_many_errors_are_capped_and_all_named() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(20)}}
    errors = check({f"p{i}": "x" for i in range(20)}, schema)
    assert 1 < len(errors) <= 8 and all(e.startswith("'p") for e in errors)


def test_coerce_types_text_by_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
            "o": {"type": "object"},
            "l": {"type": "array", "items": {"type": "integer"}},
            "u": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "s": {"type": "string"},
        },
    }
    raw = {"n": " 7 ", "x": "2.5", "b": "False", "o": "{'k': None}", "l": ["1", "2"], "u": "null", "s": 5}
    assert coerce(raw, schema, schema) == {
        "n": 7,
        "x": 2.5,
        "b": False,
        "o": {"k": None},
        "l": [1, 2],
        "u": None,
        "s": "5",
    }
    # what does not read as the type is left alone for check() to report
    assert coerce({"n": "seven", "x": "inf"}, schema, schema) == {"n": "seven", "x": "inf"}


def test_text_to_value_without_schema() -> None:
    assert text_to_value("42", None, None) == "42"
    assert text_to_value('{"a": 1}', None, None) == {"a": 1}
    assert text_to_value("[1, 'b']", {}, {}) == [1, "b"]
    assert text_to_value("null", {"type": "string"}, {}) == "null"
    assert text_to_value("null", {"type": ["integer", "null"]}, {}) is None


# ------------------------------------------------------------------------------------ agreement with pydantic


class Color(StrEnum):
    red = "red"
    blue = "blue"


class Address(BaseModel):
    street: str
    zip: str | None = None


@tool
def book(
    guests: int,
    price: float,
    vip: bool,
    room: Literal["single", "double"],
    names: list[str],
    address: Address,
    extras: dict[str, int] | None = None,
    nights: Annotated[int, Field(ge=1, le=30)] = 1,
    code: Annotated[str, Field(max_length=6, pattern="^[A-Z0-9]+$")] = "A1",
    color: Color = Color.red,
) -> str:
    """Book a room.

    Args:
        guests: number of guests
    """
    return "ok"


CANDIDATES: list[Any] = [
    0, 1, 2, 31, -1, 1.0, 2.5, True, False, None, "", "x", "5", "double", "single", "red", "ABC1", "abc", "TOOLONG1",
    [], ["a"], ["a", 1], [1], {}, {"street": "Main"}, {"street": 1}, {"street": "Main", "zip": None}, {"a": 1},
    {"a": "1"}, {"street": "Main", "extra": 1},
]  # fmt: skip
FIELDS = ["guests", "price", "vip", "room", "names", "address", "extras", "nights", "code", "color", "unknown"]


GOOD = {"guests": 2, "price": 99.5, "vip": False, "room": "double", "names": ["Ada"], "address": {"street": "Main"}}


@st.composite
def near_valid_args(draw: st.DrawFn) -> dict[str, Any]:
    """A valid mapping with 0-3 fields replaced, added or removed: both outcomes stay common."""
    args = dict(GOOD)
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(FIELDS))
        if draw(st.integers(0, 4)) == 0:
            args.pop(name, None)
        else:
            args[name] = draw(st.sampled_from(CANDIDATES))
    return args


@settings(
    max_examples=1500, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(near_valid_args())
def test_check_never_accepts_what_pydantic_rejects(args: dict[str, Any]) -> None:
    if check(args, book.parameters) == []:
        book.args_model.model_validate(args)


def test_agreement_sees_both_outcomes() -> None:
    good = dict(GOOD)
    assert check(good, book.parameters) == []
    book.args_model.model_validate(good)
    bad = dict(good, nights=31, code="abc", color="green")
    errors = check(bad, book.parameters)
    assert len(errors) == 3
    with pytest.raises(ValidationError):
        book.args_model.model_validate(bad)


def test_parse_with_project_tool_schema_end_to_end() -> None:
    text = (
        "<tool_call>\n<function=book>\n<parameter=guests>\n2\n</parameter>\n<parameter=price>\n99.5\n</parameter>\n"
        "<parameter=vip>\nfalse\n</parameter>\n<parameter=room>\ndouble\n</parameter>\n"
        "<parameter=names>\n['Ada', 'Bo']\n</parameter>\n<parameter=address>\n{\"street\": \"Main\"}\n</parameter>\n"
        "<parameter=extras>\nnull\n</parameter>\n</function>\n</tool_call>"
    )
    r = parse(text, family="qwen3-coder", tools=[book.schema])
    assert r.errors == []
    (call,) = r.tool_calls
    assert call.arguments == {
        "guests": 2, "price": 99.5, "vip": False, "room": "double", "names": ["Ada", "Bo"],
        "address": {"street": "Main"}, "extras": None,
    }  # fmt: skip
    book.args_model.model_validate(call.arguments)


# ------------------------------------------------------------------------------------------ odd schemas

KEYWORDS = [
    "type", "enum", "const", "properties", "required", "additionalProperties", "items", "prefixItems", "anyOf",
    "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
    "$defs",
]  # fmt: skip
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False)
    | st.sampled_from(
        ["string", "integer", "number", "object", "array", "boolean", "null", "#/$defs/a", "#", "[", "a", "^a"]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from([*KEYWORDS, "a", "b"]), inner, max_size=4)
    ),
    max_leaves=12,
)
schemas = st.dictionaries(st.sampled_from(KEYWORDS), json_values, max_size=5)


@settings(
    max_examples=800, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(schemas, json_values | st.text(max_size=8))
def test_odd_schemas_never_raise(schema: dict[str, Any], value: Any) -> None:
    errors = check(value, schema)
    assert isinstance(errors, list) and all(isinstance(e, str) for e in errors)
    coerce(value, schema, schema)
    if isinstance(value, str):
        text_to_value(value, schema, schema)
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    parse('<tool_call>{"name": "f", "arguments": {"a": 1, "b": "2"}}</tool_call>', family="qwen3", tools=tools)
    parse("<tool_call><function=f><parameter=a>\n1\n</parameter></function></tool_call>", family="qwen3", tools=tools)
