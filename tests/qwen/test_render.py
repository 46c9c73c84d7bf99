"""render() against golden outputs of the official templates (rendered by transformers; see
scripts/make_goldens.py), the tiny checkpoint's own chat template against render(), and input handling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tq_agents.errors import ChatFormatError
from tq_agents.models.base import ChatMessage, ToolCall
from tq_agents.models.qwen import chat_template, render

pytestmark = pytest.mark.timeout(300)

GOLDEN_DIR = Path(__file__).parent / "golden"
FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")
GOLDENS: dict[str, list[dict[str, Any]]] = {
    f: json.loads((GOLDEN_DIR / f"{f}.json").read_text(encoding="utf-8")) for f in FAMILIES
}
BY_NAME = {f: {c["name"]: c for c in GOLDENS[f]} for f in FAMILIES}
ALL_CASES = [pytest.param(f, c, id=f"{f}:{c['name']}") for f in FAMILIES for c in GOLDENS[f]]


def _kwargs(case: dict[str, Any]) -> dict[str, Any]:
    kw = dict(case["kwargs"])
    kw.setdefault("add_generation_prompt", True)
    return kw


def _has_string_arguments(case: dict[str, Any]) -> bool:
    return any(isinstance(c["function"]["arguments"], str) for m in case["messages"] for c in m.get("tool_calls") or [])


def test_golden_corpus_size_and_coverage() -> None:
    assert sum(len(g) for g in GOLDENS.values()) >= 40
    for family, cases in GOLDENS.items():
        text = "".join(c["expected"] for c in cases)
        assert len(cases) >= 13, family
        assert any(c["tools"] for c in cases), family
        assert any(len(m.get("tool_calls") or []) >= 2 for c in cases for m in c["messages"]), family  # parallel
        assert any(sum(m["role"] == "tool" for m in c["messages"]) >= 2 for c in cases), family  # merged tool responses
        assert "北京" in text, family
        assert any(c["kwargs"].get("enable_thinking") is False for c in cases), family
        assert any("filters" in json.dumps(c["messages"]) for c in cases), family  # nested arguments
    q3 = "".join(c["expected"] for c in GOLDENS["qwen3"])
    assert "<think>\n391 + 9 = 400.\n</think>" in q3  # reasoning after the last query is kept ...
    assert "17*20" not in q3  # ... and dropped before it


@pytest.mark.parametrize(("family", "case"), ALL_CASES)
def test_render_matches_official_template(family: str, case: dict[str, Any]) -> None:
    assert render(case["messages"], case["tools"], family=family, **_kwargs(case)) == case["expected"]


@pytest.fixture(scope="module")
def checkpoint_tokenizers(tiny_checkpoint: Path, tiny_checkpoint_qwen3: Path, tiny_checkpoint_qwen3_coder: Path):
    from transformers import AutoTokenizer

    paths = {"qwen2.5": tiny_checkpoint, "qwen3": tiny_checkpoint_qwen3, "qwen3-coder": tiny_checkpoint_qwen3_coder}
    return {f: AutoTokenizer.from_pretrained(p) for f, p in paths.items()}


@pytest.mark.parametrize(("family", "case"), ALL_CASES)
def test_checkpoint_chat_template_equals_render(checkpoint_tokenizers, family: str, case: dict[str, Any]) -> None:
    if _has_string_arguments(case):
        pytest.skip("string tool-call arguments are parsed by render(); a Jinja template cannot parse JSON")
    tok = checkpoint_tokenizers[family]
    kw = _kwargs(case)
    gen = kw.pop("add_generation_prompt")
    text = tok.apply_chat_template(
        case["messages"], tools=case["tools"], tokenize=False, add_generation_prompt=gen, **kw
    )
    assert text == render(case["messages"], case["tools"], family=family, **_kwargs(case))


# ------------------------------------------------------------------------------------- input handling


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_message_objects_render_like_dicts(family: str) -> None:
    msgs = [
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Weather in 北京?"),
        ChatMessage(
            role="assistant",
            content=None,
            reasoning_content="Need the tool.",
            tool_calls=[ToolCall(id="c0", name="get_weather", arguments={"city": "北京", "days": [1, 2]})],
        ),
        ChatMessage(role="tool", content="晴", tool_call_id="c0", name="get_weather"),
    ]
    as_dicts = [m.to_openai() for m in msgs]
    tools = BY_NAME["qwen3"]["tools_with_system"]["tools"]
    assert render(msgs, tools, family=family) == render(as_dicts, tools, family=family)
    flat = [dict(d) for d in as_dicts]
    flat[2]["tool_calls"] = [{"name": "get_weather", "arguments": {"city": "北京", "days": [1, 2]}}]
    assert render(flat, tools, family=family) == render(as_dicts, tools, family=family)


@pytest.mark.parametrize("family", FAMILIES)
def test_string_arguments_are_parsed_not_double_encoded(family: str) -> None:
    base = [{"role": "user", "content": "x"}]

    def with_args(args: Any) -> list[dict[str, Any]]:
        return [
            *base,
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": args}}]},
        ]

    as_map = render(with_args({"a": 1, "b": "two"}), family=family)
    assert render(with_args('{"a": 1, "b": "two"}'), family=family) == as_map
    spaced = '  {"a":1,   "b":"\\u00e9"}  '
    if family == "qwen3":  # Qwen3's template inserts a string as given (validated as a JSON object first)
        assert '"arguments": ' + spaced + "}" in render(with_args(spaced), family=family)
    else:  # parsed: Qwen2.5's template would double-encode it, Qwen3-Coder's crashes
        assert render(with_args(spaced), family=family) == render(with_args({"a": 1, "b": "é"}), family=family)
    assert '\\"' not in as_map
    assert render(with_args(""), family=family) == render(with_args({}), family=family)
    assert render(with_args(None), family=family) == render(with_args({}), family=family)


@pytest.mark.parametrize("family", FAMILIES)
def test_content_none_and_text_parts(family: str) -> None:
    plain = render([{"role": "user", "content": "hello world"}], family=family)
    parts = [{"type": "text", "text": "hello "}, {"type": "text", "text": "world"}]
    assert render([{"role": "user", "content": parts}], family=family) == plain
    assert render([{"role": "user", "content": None}], family=family) == render(
        [{"role": "user", "content": ""}], family=family
    )
    assert render([{"role": "user"}], family=family) == render([{"role": "user", "content": ""}], family=family)


def test_coder_tool_without_parameters_renders() -> None:
    tool = {"type": "function", "function": {"name": "ping", "description": "Ping."}}
    text = render([{"role": "user", "content": "hi"}], [tool], family="qwen3-coder")
    assert "<name>ping</name>\n<description>Ping.</description>\n<parameters>\n</parameters>\n</function>" in text


def test_enable_thinking_only_affects_qwen3() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert render(msgs, family="qwen3", enable_thinking=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert render(msgs, family="qwen3", enable_thinking=True) == render(msgs, family="qwen3")
    for family in ("qwen2.5", "qwen3-coder"):
        assert render(msgs, family=family, enable_thinking=False) == render(msgs, family=family)


@pytest.mark.parametrize(
    ("messages", "tools", "family", "match"),
    [
        ([], None, "qwen3", "messages is empty"),
        ("hello", None, "qwen3", "must be a list of messages"),
        ([{"role": "developer", "content": "x"}], None, "qwen3", r"messages\[0\]\.role is 'developer'"),
        ([{"role": "user", "content": 3}], None, "qwen2.5", r"messages\[0\]\.content must be a string"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], None, "qwen3", r"content\[0\] is not a text part"),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]}],
            None,
            "qwen3",
            r"messages\[0\]\.tool_calls\[0\]\.arguments is a string that is not valid JSON",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1, 2]"}}]}],
            None,
            "qwen2.5",
            "must be a JSON object, got list",
        ),
        ([{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}], None, "qwen3", "no function name"),
        ([{"role": "user", "content": "x", "tool_calls": [{"name": "f"}]}], None, "qwen3", "only assistant"),
        ([{"role": "user", "content": "x"}], ["not a tool"], "qwen3", r"tools\[0\] must be a mapping"),
        ([{"role": "user", "content": "x"}], None, "qwen4", "unknown Qwen family 'qwen4'"),
        ([{"role": "user", "content": "x"}], [{"function": {"name": "f", "x": {1, 2}}}], "qwen3", "not JSON-serial"),
    ],
)
def test_bad_input_is_a_clear_error(messages: Any, tools: Any, family: str, match: str) -> None:
    with pytest.raises(ChatFormatError, match=match):
        render(messages, tools, family=family)


# ------------------------------------------- differential: the project's Jinja templates vs render()


def _load_make_goldens():
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_goldens.py"
    spec = importlib.util.spec_from_file_location("make_goldens", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MESSAGES, _TOOLS = _load_make_goldens().chat_strategies()


@pytest.fixture(scope="module")
def jinja_tokenizer():
    from tq_agents.models.qwen import load_qwen_tokenizer

    return load_qwen_tokenizer("qwen3")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    family=st.sampled_from(FAMILIES),
    messages=_MESSAGES,
    tools=_TOOLS,
    gen=st.booleans(),
    thinking=st.sampled_from([None, True, False]),
)
def test_project_templates_agree_with_render(jinja_tokenizer, family, messages, tools, gen, thinking) -> None:
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    text = jinja_tokenizer.apply_chat_template(
        messages, tools=tools, chat_template=chat_template(family), tokenize=False, add_generation_prompt=gen, **kwargs
    )
    assert text == render(messages, tools, family=family, add_generation_prompt=gen, enable_thinking=thinking)


def test_goldens_are_in_sync_with_make_goldens_script() -> None:
    """The committed golden inputs are exactly the cases scripts/make_goldens.py renders."""
    module = _load_make_goldens()
    for family in FAMILIES:
        cases = [c for c in module.CASES if family in c.get("families", module.ALL)]
        assert [c["name"] for c in cases] == [g["name"] for g in GOLDENS[family]]
        for case, golden in zip(cases, GOLDENS[family], strict=True):
            assert json.loads(json.dumps(case["messages"])) == golden["messages"], case["name"]
            assert json.loads(json.dumps(case.get("tools"))) == golden["tools"], case["name"]
            assert (case.get("kwargs") or {}) == golden["kwargs"], case["name"]


def test_reasoning_given_as_reasoning_or_thinking_renders_like_reasoning_content() -> None:
    # apply_chat_template reads reasoning under these names too
    def last_turn(**field: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ans", **field}]

    want = render(last_turn(reasoning_content="my thoughts"), family="qwen3")
    assert "<think>\nmy thoughts\n</think>\n\nans" in want
    assert render(last_turn(reasoning="my thoughts"), family="qwen3") == want
    assert render(last_turn(thinking="my thoughts"), family="qwen3") == want
