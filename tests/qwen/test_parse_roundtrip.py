"""parse() reads back exactly what render() writes: the assistant turn of every family round-trips.

An assistant message (content, Qwen3 reasoning, tool calls with typed arguments) is rendered by the
project's own ``render`` with the tools in the system prompt; its assistant turn is cut out of the
prompt and parsed; content, reasoning and every call's name and arguments must come back unchanged.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tq_agents.models.qwen import _parse as parse_module
from tq_agents.models.qwen import parse, render

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "edit",
            "description": "Edit a file.",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "text": {"type": "string"},
                    "line": {"type": "integer"},
                    "scale": {"type": "number"},
                    "dry_run": {"type": "boolean"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "options": {"type": "object"},
                    "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
                "required": ["path"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "ping",
            "description": "No arguments.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]

safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=30)
nasty_text = safe_text | st.sampled_from(["</tool_call>", "<tool_call>", "a\nb", ' "q" ', "{'x': 1}", "True", "5"])
scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(-1e6, 1e6, allow_nan=False) | safe_text
json_like = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=3), max_leaves=6
)


@st.composite
def edit_args(draw: st.DrawFn, xml: bool) -> dict[str, Any]:
    text = safe_text if xml else nasty_text
    args: dict[str, Any] = {"path": draw(text)}
    optional = {
        "text": text,
        "line": st.integers(-(10**9), 10**9),
        "scale": st.floats(-1e9, 1e9, allow_nan=False),
        "dry_run": st.booleans(),
        "tags": st.lists(text, max_size=3),
        "options": st.dictionaries(safe_text, json_like, max_size=3),
        "limit": st.none() | st.integers(0, 1000),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            args[name] = draw(strategy)
    return args


@st.composite
def assistant_turn(draw: st.DrawFn, family: str) -> dict[str, Any]:
    xml = family == "qwen3-coder"
    calls = []
    for i in range(draw(st.integers(0, 3))):
        if draw(st.integers(0, 3)) == 0:
            name, args = "ping", {}
        else:
            name, args = "edit", draw(edit_args(xml))
        calls.append({"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": args}})
    msg: dict[str, Any] = {"role": "assistant", "content": draw(safe_text.map(str.strip)), "tool_calls": calls}
    if family == "qwen3" and draw(st.booleans()):
        msg["reasoning_content"] = draw(safe_text.map(str.strip))
    return msg


def last_assistant_turn(prompt: str) -> str:
    start = prompt.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n")
    return prompt[start : prompt.index("<|im_end|>", start)]


@pytest.fixture(autouse=True)
def _raise_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", True)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("family", ["qwen2.5", "qwen3", "qwen3-coder"])
def test_render_then_parse_round_trips(family: str) -> None:
    @settings(max_examples=300, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(assistant_turn(family))
    def check(msg: dict[str, Any]) -> None:
        prompt = render([{"role": "user", "content": "go"}, msg], TOOLS, family=family, add_generation_prompt=False)
        r = parse(last_assistant_turn(prompt), family=family, tools=TOOLS)
        assert r.errors == []
        assert [(c.name, c.arguments) for c in r.tool_calls] == [
            (c["function"]["name"], c["function"]["arguments"]) for c in msg["tool_calls"]
        ]
        assert r.content == msg["content"]
        if family == "qwen3":
            assert r.reasoning == msg.get("reasoning_content", "")

    check()
