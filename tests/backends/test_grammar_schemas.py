"""JSON schemas under constrained decoding (llguidance + the real Qwen tokenizer; random logits or the tiny
LocalQwen): keywords llguidance cannot enforce are refused naming where, annotations are kept, and the bounds
that make every grammar terminate keep the schema's meaning (tuple items, patternProperties, maxProperties,
patterns and formats against the token budget)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tq_agents.errors import ModelRequestError
from tq_agents.models._grammar import GrammarLimits, bound_schema, json_output_grammar

pytest.importorskip("torch")

from ._random_logits import drive  # (after the skip: it imports torch)

pytestmark = pytest.mark.timeout(300)

EOS = 151645  # <|im_end|>


def _samples(compiler, schema: dict[str, Any], budget: int = 256, seeds: int = 6) -> list[Any]:
    """JSON values of ``schema`` decoded from random logits; each must finish within ``budget`` and parse."""
    tok, comp = compiler
    values = []
    for seed in range(seeds):
        _, c = comp.json_output(schema, GrammarLimits(max_tokens=budget))
        ids = drive(c, seed, budget)
        assert c.is_finished() and c.error is None, tok.decode(ids)
        values.append(json.loads(tok.decode([t for t in ids if t != EOS])))
    return values


def _accepts(compiler, grammar: str, text: str) -> bool:
    tok, comp = compiler
    ids = [*tok.encode(text, add_special_tokens=False), EOS]
    return comp.matcher(grammar).validate_tokens(ids) == len(ids)


# --------------------------------------------------------------------------------------------------------------
# keywords llguidance cannot enforce: refused, naming each and where; annotations: kept
# --------------------------------------------------------------------------------------------------------------

DIGITS = {"type": "integer", "minimum": 0, "maximum": 9}
UNSUPPORTED = {
    "not": ({"type": "integer", "minimum": 0, "maximum": 12, "not": {"enum": list(range(10))}}, "not at #"),
    "contains": ({"type": "array", "items": DIGITS, "contains": {"const": 7}, "maxItems": 3}, "contains at #"),
    "if/then, nested": (
        {
            "type": "object",
            "properties": {
                "kv": {
                    "type": "object",
                    "properties": {"k": {"enum": ["a", "b"]}, "v": DIGITS},
                    "if": {"properties": {"k": {"const": "a"}}},
                    "then": {"properties": {"v": {"const": 1}}},
                }
            },
        },
        "if at #/properties/kv, then at #/properties/kv",
    ),
    "dependentRequired": (
        {"type": "object", "properties": {"a": DIGITS, "b": DIGITS}, "dependentRequired": {"a": ["b"]}},
        "dependentRequired at #",
    ),
    "propertyNames in $defs": (
        {
            "type": "object",
            "properties": {"tags": {"$ref": "#/$defs/Tags"}},
            "$defs": {"Tags": {"type": "object", "propertyNames": {"maxLength": 3}}},
        },
        "propertyNames at #/$defs/Tags",
    ),
    "in a draft-07 tuple": (
        {"type": "array", "items": [DIGITS, {"type": "integer", "not": {"const": 3}}]},
        "not at #/items/1",
    ),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_keywords_llguidance_cannot_enforce_are_refused_naming_where(name):
    schema, named = UNSUPPORTED[name]
    with pytest.raises(ModelRequestError, match=re.escape(named)) as info:
        json_output_grammar(schema, limits=GrammarLimits(max_tokens=256))
    assert info.value.message.startswith("the response_format JSON schema uses JSON-schema keywords that")
    assert info.value.hint


def test_overlapping_one_of_is_refused_and_disjoint_one_of_kept(compiler):
    overlapping = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 5}, {"type": "integer", "minimum": 3}]}
    with pytest.raises(ModelRequestError, match=r"oneOf \(at #\) has alternatives that may overlap") as info:
        json_output_grammar(overlapping)
    assert "anyOf" in info.value.hint
    disjoint = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 5}, {"type": "string", "maxLength": 3}]}
    for v in _samples(compiler, disjoint):
        assert (isinstance(v, int) and 0 <= v <= 5) or (isinstance(v, str) and len(v) <= 3), v


def test_unsupported_keywords_in_tool_parameters_and_through_local_qwen(local_qwen):
    import asyncio

    from tq_agents.models._grammar import tool_call_grammar, xml_tool_call_grammar
    from tq_agents.models.base import ChatMessage, ChatRequest

    params = {"type": "object", "properties": {"n": {"type": "integer", "not": {"const": 3}}}}
    tools = [{"type": "function", "function": {"name": "pick", "parameters": params}}]
    for build in (tool_call_grammar, xml_tool_call_grammar):
        with pytest.raises(ModelRequestError, match=r"tool 'pick' uses .*: not at #/properties/n"):
            build(tools, choice="required")
    req = ChatRequest(
        messages=[ChatMessage(role="user", content="json")],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": UNSUPPORTED["contains"][0]}},
        max_tokens=32,
    )
    with pytest.raises(ModelRequestError, match="contains at #"):
        asyncio.run(local_qwen.complete(req))


class Tagged(BaseModel):
    tags: set[str] = set()  # pydantic: {"uniqueItems": true}


def test_annotations_are_kept_and_outputs_still_validate(compiler):
    schema = {
        "title": "Link",
        "description": "a link",
        "$comment": "annotations only",
        "type": "object",
        "properties": {
            "not": {"type": "string", "format": "uri-reference", "examples": ["a"], "default": "b"},  # a name
            "if": {"type": "string", "format": "binary", "deprecated": True, "readOnly": True},
            "when": {"type": "string", "format": "date"},
            "flags": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": False, "maxItems": 3},
        },
        "required": ["not", "if", "when", "flags"],
    }
    grammar = json_output_grammar(schema, limits=GrammarLimits(max_tokens=256))
    assert '"title": "Link"' in grammar and '"format": "date"' in grammar and "uri-reference" not in grammar
    for v in _samples(compiler, schema):
        assert set(v) == {"not", "if", "when", "flags"} and isinstance(v["not"], str) and isinstance(v["if"], str)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", v["when"]) and all(isinstance(f, bool) for f in v["flags"])
    # a set (uniqueItems): compiles without limiting the number of items; uniqueness is checked after decoding
    grammar = json_output_grammar(Tagged.model_json_schema(), limits=GrammarLimits(max_tokens=256))
    assert "uniqueItems" not in grammar
    for v in _samples(compiler, Tagged.model_json_schema()):
        assert Tagged.model_validate(v)


def _project_types_and_tools(tmp_path) -> tuple[dict[str, type[BaseModel]], list[Any]]:
    import importlib
    import inspect
    import pkgutil

    import tq_agents.tools
    import tq_agents.workflows
    from tq_agents.tools.commerce import Shop, commerce_tools
    from tq_agents.tools.text import text_tools

    import tq_agents
    from tq_agents._tool import Tool

    from ._scenario import add, shout

    types: dict[str, type[BaseModel]] = {}
    tools: list[Any] = [*commerce_tools(Shop(tmp_path / "shop.sqlite")), *text_tools(), add, shout]
    skip = ("tq_agents.models", "tq_agents.sandbox", "tq_agents.cli", "tq_agents.server", "tq_agents._cli")
    for pkg in (tq_agents, tq_agents.tools, tq_agents.workflows):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.startswith(skip):
                continue
            for value in vars(importlib.import_module(info.name)).values():
                if inspect.isclass(value) and issubclass(value, BaseModel) and value.__module__.startswith("tq_agents"):
                    types[f"{value.__module__}.{value.__name__}"] = value
                elif isinstance(value, Tool):
                    tools.append(value)
    return types, tools


def test_the_projects_output_types_and_tool_schemas_still_compile(compiler, tmp_path):
    _, comp = compiler
    types, tools = _project_types_and_tools(tmp_path)
    assert "tq_agents.messages.Plan" in types and len(tools) >= 9
    for _, cls in sorted(types.items()):
        for budget in (128, 1024):
            comp.json_output(cls.model_json_schema(), GrammarLimits(max_tokens=budget))  # raises if refused
    for t in tools:
        for budget in (128, 1024):
            comp.tool_calls([t.schema], "required", GrammarLimits(max_tokens=budget))
            comp.tool_calls([t.schema], "required", GrammarLimits(max_tokens=budget), xml=True)


# --------------------------------------------------------------------------------------------------------------
# bounding keeps the schema's meaning
# --------------------------------------------------------------------------------------------------------------


def test_draft07_tuple_items_keep_their_positions(compiler):
    closed = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "array",
        "items": [DIGITS, {"type": "boolean"}],
        "additionalItems": False,
        "minItems": 2,
    }
    bounded = bound_schema(closed, 10, GrammarLimits())
    assert bounded["items"] == [DIGITS, {"type": "boolean"}] and bounded["additionalItems"] is False
    for draft in (closed, {k: v for k, v in closed.items() if k != "$schema"}):
        for v in _samples(compiler, draft):
            assert len(v) == 2 and type(v[0]) is int and 0 <= v[0] <= 9 and type(v[1]) is bool, v
    open_tuple = {"type": "array", "items": [{"type": "boolean"}, {"const": "x"}], "minItems": 3}
    for v in _samples(compiler, open_tuple):
        assert 3 <= len(v) <= 8 and type(v[0]) is bool and v[1] == "x", v
    typed_rest = {"type": "array", "items": [{"type": "boolean"}], "additionalItems": DIGITS, "minItems": 2}
    for v in _samples(compiler, typed_rest):
        assert type(v[0]) is bool and all(type(x) is int and 0 <= x <= 9 for x in v[1:]), v
    # the 2020-12 spelling of a closed tuple stays closed too
    closed_2020 = {"type": "array", "prefixItems": [DIGITS], "items": False}
    assert bound_schema(closed_2020, 10, GrammarLimits())["items"] is False
    for v in _samples(compiler, closed_2020):
        assert len(v) <= 1 and all(type(x) is int for x in v), v


def test_an_objects_own_pattern_properties_are_kept(compiler):
    schema = {"type": "object", "patternProperties": {"^n_": DIGITS}, "minProperties": 1}
    grammar = json_output_grammar(schema, limits=GrammarLimits(max_tokens=256))
    assert _accepts(compiler, grammar, '{"n_x": 5}')
    assert not _accepts(compiler, grammar, '{"n_x": "s"}')
    for v in _samples(compiler, schema):
        assert v and all(k.startswith("n_") and type(x) is int and 0 <= x <= 9 for k, x in v.items()), v
    mixed = {
        "type": "object",
        "properties": {"id": {"type": "string", "maxLength": 4}},
        "patternProperties": {"^x-": {"type": "boolean"}},
        "additionalProperties": {"type": "integer"},
        "required": ["id"],
    }
    for v in _samples(compiler, mixed):
        assert isinstance(v["id"], str), v
        assert all(type(x) is bool if k.startswith("x-") else type(x) is int for k, x in v.items() if k != "id"), v


MAPS = {
    "map with minProperties 2": (
        {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 2},
        lambda v: len(v) >= 2 and all(isinstance(x, str) for x in v.values()),
    ),
    "free-form object, minProperties 3": ({"type": "object", "minProperties": 3}, lambda v: len(v) >= 3),
    "10 required properties and typed extras": (
        {
            "type": "object",
            "properties": {f"k{i}": DIGITS for i in range(10)},
            "required": [f"k{i}" for i in range(10)],
            "additionalProperties": DIGITS,
        },
        lambda v: {f"k{i}" for i in range(10)} <= set(v) and all(type(x) is int for x in v.values()),
    ),
    "required key the schema leaves to additionalProperties": (
        {"type": "object", "additionalProperties": DIGITS, "required": ["a_rather_long_key_name_of_40_characters"]},
        lambda v: type(v["a_rather_long_key_name_of_40_characters"]) is int,
    ),
}


@pytest.mark.parametrize("budget", [64, 512])
@pytest.mark.parametrize("name", sorted(MAPS))
def test_max_properties_never_below_required_or_min_properties(compiler, name, budget):
    schema, valid = MAPS[name]
    if budget == 64 and name.startswith("10 required"):
        budget = 160  # ten required digits need more than 64 tokens
    for v in _samples(compiler, schema, budget=budget, seeds=3):
        assert valid(v), v


SHA = {"type": "string", "pattern": "^[0-9a-f]{40}$"}


def _tool(name: str, key: dict[str, Any]) -> dict[str, Any]:
    params = {"type": "object", "properties": {"key": key, "note": {"type": "string"}}, "required": ["key", "note"]}
    return {"type": "function", "function": {"name": name, "description": name, "parameters": params}}


async def test_a_patterned_string_is_never_capped_below_its_pattern(local_qwen, compiler):
    from tq_agents.models.base import ChatMessage, ChatRequest
    from tq_agents.models.qwen import parse

    for name, key, check in (
        ("checkout", SHA, r"[0-9a-f]{40}"),
        ("lookup", {"type": "string", "format": "uuid"}, r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"),
    ):
        req = ChatRequest(
            messages=[ChatMessage(role="user", content="hi")],
            tools=[_tool(name, key)],
            tool_choice="required",
            max_tokens=256,
            temperature=1.0,
            seed=0,
        )
        resp = await local_qwen.complete(req)
        assert resp.tool_call_errors == [] and resp.message.tool_calls, resp.raw_text
        assert re.fullmatch(check, resp.message.tool_calls[0].arguments["key"]), resp.raw_text
    tok, comp = compiler
    for seed in range(4):  # up to four calls share the 256 tokens: each still holds its 40 characters
        _, c = comp.tool_calls([_tool("checkout", SHA)], "required", GrammarLimits(max_tokens=256))
        ids = drive(c, seed, 256)
        parsed = parse(tok.decode(ids), family="qwen2.5", tools=[_tool("checkout", SHA)])
        assert c.is_finished() and parsed.errors == [] and parsed.tool_calls, tok.decode(ids)
        assert all(re.fullmatch(r"[0-9a-f]{40}", call.arguments["key"]) for call in parsed.tool_calls)


def test_a_budget_too_small_for_the_bounded_schema_is_blamed_not_the_schema(compiler):
    # Python cannot read \p{Lu}, so the characters the pattern needs are unknown and the budget's cap applies
    upper = {"type": "string", "pattern": r"^\p{Lu}{40}$"}
    _, comp = compiler
    with pytest.raises(ModelRequestError, match=r"max_tokens=64 is too small for the parameters schema") as info:
        comp.tool_calls([_tool("code", upper)], "required", GrammarLimits(max_tokens=64))
    assert "raise max_tokens" in info.value.hint and "schema itself is fine" in info.value.hint
    tok, comp = compiler
    _, c = comp.tool_calls([_tool("code", upper)], "required", GrammarLimits(max_tokens=256))
    ids = drive(c, 0, 256)
    assert c.is_finished(), tok.decode(ids)
    # a schema that is wrong whatever the budget is blamed as such
    bad = {"type": "object", "patternProperties": {"^a": DIGITS, "^ab": DIGITS}}
    with pytest.raises(ModelRequestError, match=r"cannot be enforced .*not disjoint"):
        json_output_grammar(bad, limits=GrammarLimits(max_tokens=1024))


def test_pydantic_field_constraints_still_bound(compiler):
    class Item(BaseModel):
        sku: str = Field(pattern=r"^[A-Z]{2}[0-9]{3}$")
        codes: list[str] = Field(default=[], max_length=2)

    for v in _samples(compiler, Item.model_json_schema(), budget=96):
        Item.model_validate(v)
