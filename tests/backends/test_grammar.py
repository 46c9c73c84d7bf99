"""Grammars alone (llguidance + the real Qwen tokenizer, random logits instead of a model): every constrained
completion terminates within its budget, parses, and validates; schema bounding; bad requests."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from tq_agents.errors import ModelRequestError
from tq_agents.models._grammar import GrammarLimits, bound_schema, tool_call_grammar

pytest.importorskip("torch")

from ._random_logits import drive  # (after the skip: it imports torch)

pytestmark = pytest.mark.timeout(300)


class Item(BaseModel):
    sku: str = Field(pattern=r"^[A-Z]{2}[0-9]{3}$")
    qty: int = Field(ge=1, le=99)
    price: float = Field(gt=0)


class Order(BaseModel):
    customer: str
    items: list[Item] = Field(min_length=1)
    notes: dict[str, str] = {}
    express: bool
    coupon: str | None = None
    status: str = Field(json_schema_extra={"enum": ["new", "paid"]})


TOOLS = [
    {"type": "function", "function": {"name": "place_order", "parameters": Order.model_json_schema()}},
    {
        "type": "function",
        "function": {
            "name": "note",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "anything": {}},
                "required": ["text"],
            },
        },
    },
]


@pytest.mark.parametrize("budget", [128, 320])
def test_tool_calls_terminate_parse_and_validate(compiler, budget):
    from tq_agents.models.qwen import parse

    tok, comp = compiler
    limits = GrammarLimits(max_tokens=budget)
    for seed in range(12):
        _, c = comp.tool_calls(TOOLS, "required", limits)
        ids = drive(c, seed, budget)
        assert c.is_finished() and c.error is None, tok.decode(ids)
        parsed = parse(tok.decode(ids), family="qwen2.5", tools=TOOLS)
        assert parsed.errors == [] and parsed.tool_calls, tok.decode(ids)
        for call in parsed.tool_calls:
            if call.name == "place_order":
                Order.model_validate(call.arguments)


def test_json_output_terminates_and_validates(compiler):
    tok, comp = compiler
    for seed in range(12):
        _, c = comp.json_output(Order.model_json_schema(), GrammarLimits(max_tokens=200))
        ids = drive(c, seed, 200)
        assert c.is_finished(), tok.decode(ids)
        Order.model_validate_json(tok.decode([t for t in ids if t != 151645]))


def test_qwen3_coder_xml_calls_terminate_parse_and_validate(compiler):
    from tq_agents.models.qwen import parse

    tok, comp = compiler
    simple = [
        {
            "type": "function",
            "function": {
                "name": "write_file",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string"},
                        "content": {"type": "string"},
                        "mode": {"type": "string", "enum": ["w", "a"]},
                        "retries": {"type": "integer", "minimum": 0, "maximum": 3},
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["path", "content"],
                },
            },
        }
    ]
    for seed in range(12):
        _, c = comp.tool_calls(simple, "required", GrammarLimits(max_tokens=160), xml=True)
        ids = drive(c, seed, 160)
        text = tok.decode(ids)
        assert c.is_finished() and "<function=write_file>" in text, text
        parsed = parse(text, family="qwen3-coder", tools=simple)
        assert parsed.errors == [] and parsed.tool_calls, text


def test_bound_schema_bounds_everything():
    limits = GrammarLimits(max_array_items=5)
    b = bound_schema(Order.model_json_schema(), 40, limits)
    assert b["properties"]["customer"]["maxLength"] == 40
    assert b["properties"]["items"]["maxItems"] == 5
    assert b["additionalProperties"] is False and b["$defs"]["Item"]["additionalProperties"] is False
    assert b["$defs"]["Item"]["properties"]["qty"]["maximum"] == 99  # a tighter bound of the schema is kept
    assert b["$defs"]["Item"]["properties"]["price"]["multipleOf"] > 0
    assert b["properties"]["notes"]["maxProperties"] == 5
    free = bound_schema({"type": "object", "properties": {"x": {}}}, 10, limits)
    assert "anyOf" in free["properties"]["x"]  # "any JSON" becomes bounded scalars


def test_bad_tool_choice_and_empty_tools():
    with pytest.raises(ModelRequestError, match="not among the request's tools"):
        tool_call_grammar(TOOLS, choice="missing")
    with pytest.raises(ModelRequestError, match="no tools"):
        tool_call_grammar([], choice="required")


def test_grammar_text_mentions_tool_names_and_token_ids():
    g = tool_call_grammar(TOOLS, choice="note", limits=GrammarLimits(max_tokens=64))
    assert "<[151657]>" in g and "<[151658]>" in g and json.dumps("note")[1:-1] in g and "place_order" not in g


async def test_local_qwen3_coder_constrained_xml_calls(tiny_checkpoint_qwen3_coder):
    from tq_agents.models.base import ChatMessage, ChatRequest
    from tq_agents.models.local import LocalQwen

    model = LocalQwen(str(tiny_checkpoint_qwen3_coder), max_tokens=160)
    assert model.family == "qwen3-coder"
    for seed in range(4):
        req = ChatRequest(
            messages=[ChatMessage(role="user", content="go")],
            tools=TOOLS[1:],
            tool_choice="required",
            seed=seed,
            temperature=1.0,
        )
        resp = await model.complete(req)
        assert "<function=note>" in resp.raw_text
        assert resp.tool_call_errors == [] and resp.message.tool_calls, resp.raw_text


@pytest.mark.parametrize("free_tokens", [0, 40, 90])
def test_auto_lazy_calls_fit_the_remaining_budget(compiler, free_tokens):
    """Under tool_choice="auto" the call grammar starts at <tool_call> and is sized to the tokens left."""
    from tq_agents.models.qwen import parse

    tok, comp = compiler
    budget = 160
    for seed in range(4):
        _, c = comp.tool_calls(TOOLS, "auto", GrammarLimits(max_tokens=budget))
        free = tok.encode(" free text" * 40, add_special_tokens=False)[:free_tokens]
        for t in free:
            c.advance(t)
        c.advance(151657)  # the model opens a call
        rest = drive(c, seed, budget - len(free) - 1)
        parsed = parse(tok.decode([*free, 151657, *rest]), family="qwen2.5", tools=TOOLS)
        if free_tokens < 90:
            assert c.is_finished(), tok.decode(rest)
            assert parsed.errors == [] and parsed.tool_calls
        elif not c.is_finished():  # 70 tokens cannot hold the smallest place_order call: a clean cut-off
            assert parsed.tool_calls == [] and "cut off" in parsed.errors[0].reason
