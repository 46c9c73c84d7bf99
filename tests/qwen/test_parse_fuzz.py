"""Property tests of parse(): generated completions round-trip; mutated and random ones never raise.

Over 10,000 examples in all (2,000 round trips, 6,500 mutated, 2,000 random), derandomized so CI is stable.
Mutation seeds are the benchmark corpus (``benchmarks/parse_corpus.py``: realistic faulty outputs) and fresh
generated completions.
Every example also checks the result's invariants: each attempted call is either a call or an error, ids are
``call_<index>``, and with tools every returned call fits its tool's schema.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tq_agents.models.qwen import ParsedCompletion, parse
from tq_agents.models.qwen import _parse as parse_module
from tq_agents.models.qwen._schema import check

pytestmark = pytest.mark.timeout(240)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": "integer"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "content": {"type": "string"},
                    "overwrite": {"type": "boolean"},
                    "mode": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "plan",
            "parameters": {
                "type": "object",
                "$defs": {
                    "Step": {
                        "type": "object",
                        "properties": {"title": {"type": "string"}, "cost": {"type": "number"}},
                        "required": ["title"],
                    }
                },
                "properties": {
                    "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                    "meta": {"type": "object"},
                },
                "required": ["steps"],
            },
        },
    },
]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}

TAGS = [
    "<tool_call>",
    "</tool_call>",
    "<function=",
    "</function>",
    "<parameter=",
    "</parameter>",
    "<think>",
    "</think>",
]
NASTY = [
    *TAGS,
    "<|im_end|>",
    "<tool_response>",
    "</tool_response>",
    "{",
    "}",
    "[",
    "]",
    '"',
    "'",
    "\\",
    "\\u",
    "\\ud800",
    ",",
    ":",
    "\n",
    "True",
    "None",
    "NaN",
    "```json\n",
    "```",
    "<function=get_weather>",
    "<parameter=city>",
    '{"name": "get_weather", "arguments": {',
    '"arguments": "{\\"city\\": 1}"',
    "1e999",
    "-",
    "/*",
    "//",
]


@pytest.fixture(autouse=True)
def _raise_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", True)


def assert_invariants(r: ParsedCompletion, tools: list[dict[str, Any]] | None) -> None:
    indices = sorted([c.id for c in r.tool_calls] + [f"call_{e.index}" for e in r.errors], key=lambda s: int(s[5:]))
    assert indices == [f"call_{i}" for i in range(len(indices))], "every attempt is exactly one call or error"
    for c in r.tool_calls:
        assert isinstance(c.arguments, dict)
        if tools is not None:
            assert c.name in SCHEMAS
            assert check(c.arguments, SCHEMAS[c.name]) == []
    for e in r.errors:
        assert e.reason and isinstance(e.raw, str)
    assert not r.content.endswith("<|im_end|>") and r.content == r.content.strip()


# ------------------------------------------------------------------------------------------ generators

# text that cannot be mistaken for markup (the round trip must be exact)
plain = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), min_size=0, max_size=40
).map(str.strip)
any_text = st.text(max_size=30)
# Argument text of a well-formed completion contains no Qwen markup: no special-token text (the parser ends the
# turn at <|im_end|> even inside a call, as a model stops on it: test_turn_end_token_inside_a_call_ends_the_turn)
# and no call/parameter tags (ambiguous inside an XML parameter value). Reasoning tags are allowed: inside a call
# they are argument text. Tag look-alikes inside strings have their own
# tests in test_parse.py. Hypothesis draws string constants from the code under test, so without this filter it
# finds the markup.
_NOT_IN_ARGS = ("<|", "<tool_", "</tool_", "<function", "</function", "<parameter", "</parameter")


def _arg_text(max_size: int) -> st.SearchStrategy[str]:
    text = st.text(max_size=max_size).filter(lambda s: not any(t in s for t in _NOT_IN_ARGS))
    with_tag = st.tuples(text, st.sampled_from(["<think>", "</think>"]), text).map("".join)
    return st.one_of(text, text, text, with_tag)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _arg_text(30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_arg_text(8), inner, max_size=3),
    max_leaves=8,
)
xml_safe = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=60)


@st.composite
def valid_call(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    name = draw(st.sampled_from(sorted(SCHEMAS)))
    if name == "get_weather":
        args: dict[str, Any] = {"city": draw(xml_safe)}
        if draw(st.booleans()):
            args["days"] = draw(st.integers(0, 10**9))
        if draw(st.booleans()):
            args["unit"] = draw(st.sampled_from(["celsius", "fahrenheit"]))
    elif name == "write_file":
        args = {"path": draw(xml_safe), "content": draw(xml_safe)}
        if draw(st.booleans()):
            args["overwrite"] = draw(st.booleans())
        if draw(st.booleans()):
            args["mode"] = draw(st.none() | st.integers(0, 0o777))
    else:
        step = st.fixed_dictionaries(
            {"title": _arg_text(20)}, optional={"cost": st.floats(allow_nan=False, allow_infinity=False)}
        )
        args = {"steps": draw(st.lists(step, max_size=3))}
        if draw(st.booleans()):
            args["meta"] = draw(st.dictionaries(_arg_text(5), json_values, max_size=2))
    return name, args


def render_hermes(name: str, args: dict[str, Any], ascii_only: bool) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}, ensure_ascii=ascii_only) + "\n</tool_call>"


def render_xml(name: str, args: dict[str, Any]) -> str:
    parts = [f"<tool_call>\n<function={name}>\n"]
    for k, v in args.items():
        text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        parts.append(f"<parameter={k}>\n{text}\n</parameter>\n")
    parts.append("</function>\n</tool_call>")
    return "".join(parts)


@st.composite
def completion(draw: st.DrawFn) -> tuple[str, str, str | None, list[tuple[str, dict[str, Any]]]]:
    """A well-formed completion: optional reasoning, optional content, 0-3 calls in one format."""
    reasoning = draw(st.none() | plain)
    content = draw(plain)
    calls = draw(st.lists(valid_call(), max_size=3))
    xml = draw(st.booleans())
    ascii_only = draw(st.booleans())
    text = ""
    if reasoning is not None:
        text += f"<think>\n{reasoning}\n</think>\n\n"
    text += content
    for name, args in calls:
        text += "\n" + (render_xml(name, args) if xml else render_hermes(name, args, ascii_only))
    if draw(st.booleans()):
        text += "<|im_end|>"
    return text, content, reasoning, calls


def _load_corpus() -> list[str]:
    """Realistic faulty completions from the parse benchmark's seeded corpus, as mutation seeds."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "parse_corpus.py"
    spec = importlib.util.spec_from_file_location("tq_parse_corpus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    return [sample.text for sample in module.make_corpus(500, seed=1)]


SEEDS = _load_corpus()


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A seed (a realistic generated completion, faulty or clean, from the corpus), then 1-6 mutations."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "truncate", "quotes", "replace"]))
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 30)))
        if op == "insert":
            text = text[:i] + draw(st.sampled_from(NASTY) | any_text) + text[i:]
        elif op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "truncate":
            text = text[:i]
        elif op == "quotes":
            text = text[:i] + text[i:].replace('"', "'", draw(st.integers(1, 20)))
        else:
            text = text[:i] + draw(st.sampled_from(NASTY)) + text[j:]
    return text


# ------------------------------------------------------------------------------------------ properties


@settings(FUZZ, max_examples=2000)
@given(completion(), st.sampled_from(["qwen2.5", "qwen3", "qwen3-coder"]))
def test_generated_completions_round_trip(
    sample: tuple[str, str, str | None, list[tuple[str, dict[str, Any]]]], family: str
) -> None:
    text, content, reasoning, expected = sample
    r = parse(text, family=family, tools=TOOLS)
    assert r.errors == []
    assert [(c.name, c.arguments) for c in r.tool_calls] == expected
    assert r.content == content
    assert r.reasoning == reasoning
    assert_invariants(r, TOOLS)


@settings(FUZZ, max_examples=3500)
@given(mutated(), st.sampled_from(["qwen2.5", "qwen3", "qwen3-coder"]), st.booleans())
def test_mutated_completions_never_raise_with_tools(text: str, family: str, opened: bool) -> None:
    assert_invariants(parse(text, family=family, tools=TOOLS, prompt_opened_think=opened), TOOLS)


@settings(FUZZ, max_examples=3000)
@given(mutated())
def test_mutated_completions_never_raise_without_tools(text: str) -> None:
    assert_invariants(parse(text, family="qwen3"), None)


@settings(FUZZ, max_examples=2000)
@given(st.lists(st.sampled_from(NASTY) | st.text(max_size=12), max_size=25).map("".join))
def test_random_markup_soup_never_raises(text: str) -> None:
    assert_invariants(parse(text, family="qwen3-coder", tools=TOOLS), TOOLS)
    assert_invariants(parse(text, family="qwen2.5"), None)
