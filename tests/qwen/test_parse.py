"""parse(): every repair it makes and every way it refuses, for Hermes JSON and Qwen3-Coder XML."""

from __future__ import annotations

from typing import Any

import pytest

from tq_agents.errors import ConfigError
from tq_agents.models.qwen import ParsedCompletion, parse
from tq_agents.models.qwen import _parse as parse_module

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "exact": {"type": "boolean"},
                "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                "score": {"type": "number"},
                "filters": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["query"],
        },
    },
}
TOOLS = [WEATHER, SEARCH]


@pytest.fixture(autouse=True)
def _raise_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An internal bug must fail these tests, not be reported as a refused call."""
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", True)


def hermes(name: str, args: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {args}}}\n</tool_call>'


def calls(result: ParsedCompletion) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.id, c.name, c.arguments) for c in result.tool_calls]


# ------------------------------------------------------------------------------------------ plain output


def test_plain_text_is_content() -> None:
    r = parse("Hello there.<|im_end|>", family="qwen2.5")
    assert r.content == "Hello there."
    assert r.reasoning is None and r.tool_calls == [] and r.errors == []


def test_well_formed_hermes_call_with_content() -> None:
    text = "Let me check.\n" + hermes("get_weather", '{"city": "Paris", "days": 3}')
    r = parse(text, family="qwen2.5", tools=TOOLS)
    assert r.content == "Let me check."
    assert calls(r) == [("call_0", "get_weather", {"city": "Paris", "days": 3})]
    assert r.errors == []


def test_parallel_calls_get_sequential_ids() -> None:
    text = hermes("get_weather", '{"city": "Paris"}') + "\n" + hermes("search", '{"query": "louvre"}')
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [
        ("call_0", "get_weather", {"city": "Paris"}),
        ("call_1", "search", {"query": "louvre"}),
    ]


def test_without_tools_any_name_is_accepted_untyped() -> None:
    r = parse(hermes("anything", '{"x": "5"}'), family="qwen3")
    assert calls(r) == [("call_0", "anything", {"x": "5"})]


def test_to_message_round_trip() -> None:
    r = parse("<think>hm</think>\n\nok" + hermes("search", '{"query": "q"}'), family="qwen3", tools=TOOLS)
    msg = r.to_message()
    assert msg.role == "assistant" and msg.content == "ok" and msg.reasoning_content == "hm"
    assert [c.name for c in msg.tool_calls] == ["search"]


# ------------------------------------------------------------------------------------------- repairs


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("{'city': 'Paris'}", {"city": "Paris"}, id="single-quotes"),
        pytest.param('{"city": "Paris", "days": 2,}', {"city": "Paris", "days": 2}, id="trailing-comma-object"),
        pytest.param(
            '{"query": "a", "tags": ["x", "y",],}', {"query": "a", "tags": ["x", "y"]}, id="trailing-comma-array"
        ),
        pytest.param(
            '{"query": "a", "exact": True, "limit": None}',
            {"query": "a", "exact": True, "limit": None},
            id="python-literals",
        ),
        pytest.param('{"query": "a", "exact": False}', {"query": "a", "exact": False}, id="python-false"),
        pytest.param('{city: "Paris"}', {"city": "Paris"}, id="bare-keys"),
        pytest.param('{"city": "Paris" "days": 2}', {"city": "Paris", "days": 2}, id="missing-comma"),
        pytest.param('{"city": "Paris" // the capital\n}', {"city": "Paris"}, id="comment"),
        pytest.param('{"query": "line one\nline two"}', {"query": "line one\nline two"}, id="raw-newline-in-string"),
        pytest.param('"{\\"city\\": \\"Rome\\"}"', {"city": "Rome"}, id="arguments-as-json-string"),
        pytest.param("\"{'city': 'Rome'}\"", {"city": "Rome"}, id="arguments-as-python-dict-string"),
    ],
)
def test_json_repairs(body: str, expected: dict[str, Any]) -> None:
    name = "search" if "query" in expected else "get_weather"
    r = parse(hermes(name, body), family="qwen2.5", tools=TOOLS)
    assert r.errors == []
    assert calls(r) == [("call_0", name, expected)]


def test_python_call_syntax() -> None:
    text = (
        "<tool_call>\nget_weather(city='Oslo', days=3)\n</tool_call>\n"
        "<tool_call>\nsearch(query=\"a\", tags=('x', 'y'), exact=True)\n</tool_call>"
    )
    r = parse(text, family="qwen2.5", tools=TOOLS)
    assert r.errors == []
    assert calls(r) == [
        ("call_0", "get_weather", {"city": "Oslo", "days": 3}),
        ("call_1", "search", {"query": "a", "tags": ["x", "y"], "exact": True}),
    ]


def test_single_quoted_whole_call() -> None:
    r = parse("<tool_call>\n{'name': 'get_weather', 'arguments': {'city': \"O'Hare\"}}\n</tool_call>", family="qwen3")
    assert calls(r) == [("call_0", "get_weather", {"city": "O'Hare"})]


def test_missing_closing_tag_at_end() -> None:
    r = parse('Checking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}', family="qwen3")
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]
    assert r.content == "Checking."


def test_missing_closing_tag_between_calls() -> None:
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        '<tool_call>\n{"name": "search", "arguments": {"query": "fjords"}}\n</tool_call>'
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert [c.name for c in r.tool_calls] == ["get_weather", "search"]
    assert r.errors == []


def test_missing_closing_tag_then_prose_keeps_prose_as_content() -> None:
    r = parse('<tool_call>\n{"name": "search", "arguments": {"query": "a"}}\nI will wait.', family="qwen3")
    assert calls(r) == [("call_0", "search", {"query": "a"})]
    assert r.content == "I will wait."


def test_missing_brace_before_closing_tag_is_repaired() -> None:
    # vLLM issue 22885: the last '}' of the call goes missing
    r = parse('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}\n</tool_call>', family="qwen3")
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]


def test_extra_closing_brace_is_ignored() -> None:
    r = parse('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}}\n</tool_call>', family="qwen3")
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]


def test_two_objects_in_one_block() -> None:
    # vLLM issue 17790: "Extra data" from json.loads
    text = (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        '{"name": "get_weather", "arguments": {"city": "Bergen"}}\n</tool_call>'
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [
        ("call_0", "get_weather", {"city": "Oslo"}),
        ("call_1", "get_weather", {"city": "Bergen"}),
    ]


def test_array_of_calls_in_one_block() -> None:
    text = (
        '<tool_call>\n[{"name": "search", "arguments": {"query": "a"}}, '
        '{"name": "search", "arguments": {"query": "b"}}]\n</tool_call>'
    )
    r = parse(text, family="qwen2.5", tools=TOOLS)
    assert [c.arguments["query"] for c in r.tool_calls] == ["a", "b"]
    assert [c.id for c in r.tool_calls] == ["call_0", "call_1"]


def test_closing_tag_inside_a_string_argument() -> None:
    r = parse(hermes("search", '{"query": "what is </tool_call>?"}'), family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "what is </tool_call>?"})]


def test_opening_tag_inside_a_string_argument() -> None:
    text = hermes("search", '{"query": "what is <tool_call>?"}') + "\n" + hermes("search", '{"query": "b"}')
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "what is <tool_call>?"}), ("call_1", "search", {"query": "b"})]


def test_python_escapes_and_unknown_escapes_in_strings() -> None:
    r = parse(hermes("search", r"""{'query': '\x41\u00e9\U0001F600 \d+ C:\q'}"""), family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "Aé😀 \\d+ C:\\q"})]


def test_braces_inside_string_argument() -> None:
    # vLLM issue 21544: mkdir -p test/{test1,test2
    r = parse(hermes("search", '{"query": "mkdir -p test/{test1,test2"}'), family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "mkdir -p test/{test1,test2"})]


def test_json_fence_inside_block() -> None:
    text = '<tool_call>\n```json\n{"name": "search", "arguments": {"query": "a"}}\n```\n</tool_call>'
    assert calls(parse(text, family="qwen2.5")) == [("call_0", "search", {"query": "a"})]


def test_parameters_key_and_openai_shape_and_flat_form() -> None:
    text = (
        '<tool_call>{"name": "search", "parameters": {"query": "a"}}</tool_call>'
        '<tool_call>{"type": "function", "function": {"name": "search", "arguments": {"query": "b"}}}</tool_call>'
        '<tool_call>{"name": "search", "query": "c"}</tool_call>'
    )
    r = parse(text, family="qwen2.5", tools=TOOLS)
    assert [c.arguments for c in r.tool_calls] == [{"query": "a"}, {"query": "b"}, {"query": "c"}]


def test_function_key_as_name_and_args_key() -> None:
    text = '<tool_call>{"function": "search", "args": {"query": "a"}}</tool_call>'
    assert calls(parse(text, family="qwen2.5", tools=TOOLS)) == [("call_0", "search", {"query": "a"})]


def test_xml_function_with_json_arguments() -> None:
    text = '<tool_call>\n<function=get_weather>\n{"city": "Oslo", "days": 2}\n</function>\n</tool_call>'
    assert calls(parse(text, family="qwen3-coder", tools=TOOLS)) == [
        ("call_0", "get_weather", {"city": "Oslo", "days": 2})
    ]
    bad = '<tool_call>\n<function=get_weather>\n{"city": "Oslo"\n<parameter=days>\n2\n</parameter>\n</function>'
    r = parse(bad, family="qwen3-coder", tools=TOOLS)
    assert r.tool_calls == [] and "not a JSON object" in r.errors[0].reason


def test_functions_prefix_is_stripped_when_tools_known() -> None:
    r = parse(hermes("functions.search", '{"query": "a"}'), family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "a"})]


def test_null_or_missing_arguments_become_empty_mapping() -> None:
    r = parse(
        '<tool_call>{"name": "ping", "arguments": null}</tool_call><tool_call>{"name": "ping"}</tool_call>',
        family="qwen3",
    )
    assert calls(r) == [("call_0", "ping", {}), ("call_1", "ping", {})]


def test_string_numbers_are_typed_by_schema() -> None:
    r = parse(hermes("get_weather", '{"city": "Oslo", "days": "3"}'), family="qwen3-coder", tools=TOOLS)
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo", "days": 3})]


def test_numbers_for_string_parameters_become_strings() -> None:
    r = parse(hermes("search", '{"query": 3106, "tags": [1, 2.5]}'), family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "3106", "tags": ["1", "2.5"]})]


def test_bare_json_call_without_tags_when_tools_given() -> None:
    text = '```json\n{"name": "search", "arguments": {"query": "bare"}}\n```'
    r = parse(text, family="qwen2.5", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "bare"})]
    assert r.content == ""


def test_bare_json_is_content_without_tools_or_for_unknown_names() -> None:
    text = '{"name": "search", "arguments": {"query": "bare"}}'
    assert parse(text, family="qwen2.5").content == text
    other = '{"name": "Ada", "arguments": {"age": 3}}'
    assert parse(other, family="qwen2.5", tools=TOOLS).tool_calls == []
    odd = '{"name": {"query": "x"}, "arguments": {}}'  # found by the fuzz test: an unhashable name
    assert parse(odd, family="qwen2.5", tools=TOOLS).content == odd


def test_good_call_beside_bad_one_is_kept() -> None:
    text = (
        hermes("get_weather", '{"city": "Oslo"}')
        + '\n<tool_call>\n{"name": "search", "arguments": {"query": }\n</tool_call>\n'
        + hermes("search", '{"query": "ok"}')
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"}), ("call_2", "search", {"query": "ok"})]
    assert [e.index for e in r.errors] == [1]
    assert "not valid JSON" in r.errors[0].reason
    assert '"query": }' in r.errors[0].raw


# ------------------------------------------------------------------------------------------ refusals


def test_truncated_call_is_refused_as_cut_off() -> None:
    r = parse('<tool_call>\n{"name": "search", "arguments": {"query": "half a sen', family="qwen3", tools=TOOLS)
    assert r.tool_calls == []
    (err,) = r.errors
    assert err.index == 0 and "cut off" in err.reason


def test_truncated_object_without_close_tag_is_refused() -> None:
    r = parse('<tool_call>\n{"name": "search", "arguments": {"query": "a", "tags": ["x"', family="qwen3")
    assert r.tool_calls == [] and "cut off" in r.errors[0].reason


def test_output_ending_right_after_opener_is_refused() -> None:
    r = parse("Calling now <tool_call>\n", family="qwen3")
    assert r.content == "Calling now" and r.tool_calls == []
    assert "cut off" in r.errors[0].reason


def test_empty_block_is_refused() -> None:
    r = parse("<tool_call>\n</tool_call>", family="qwen3")
    assert r.tool_calls == [] and "empty" in r.errors[0].reason


def test_unknown_tool_is_refused_with_suggestion() -> None:
    r = parse(hermes("get_wether", '{"city": "Oslo"}'), family="qwen3", tools=TOOLS)
    assert r.tool_calls == []
    (err,) = r.errors
    assert err.name == "get_wether"
    assert "no tool named 'get_wether'" in err.reason and "Did you mean 'get_weather'" in err.reason


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        pytest.param('{"days": 2}', "'city' is required but missing", id="required"),
        pytest.param('{"city": ["Oslo"]}', "'city': expected string, got array", id="type"),
        pytest.param(
            '{"city": "Oslo", "days": "three"}', "'days': expected integer, got string 'three'", id="int-text"
        ),
        pytest.param('{"city": "Oslo", "days": 40}', "'days' must be at most 14", id="maximum"),
        pytest.param('{"city": "Oslo", "unit": "kelvin"}', "not one of the allowed values", id="enum"),
        pytest.param('{"city": "Oslo", "wind": true}', "'wind' is not a known argument", id="additional"),
        pytest.param('{"city": true}', "'city': expected string, got boolean true", id="bool-is-not-string"),
    ],
)
def test_schema_violations_are_refused(args: str, fragment: str) -> None:
    r = parse(hermes("get_weather", args), family="qwen3", tools=TOOLS)
    assert r.tool_calls == []
    (err,) = r.errors
    assert fragment in err.reason, err.reason


def test_nested_schema_violation_names_the_path() -> None:
    r = parse(hermes("search", '{"query": "a", "tags": ["x", {"y": 1}]}'), family="qwen3", tools=TOOLS)
    assert "'tags[1]': expected string, got object" in r.errors[0].reason
    r = parse(hermes("search", '{"query": "a", "filters": {"lang": [1]}}'), family="qwen3", tools=TOOLS)
    assert "'filters.lang': expected string, got array" in r.errors[0].reason


@pytest.mark.parametrize(
    ("block", "fragment"),
    [
        pytest.param('<tool_call>\n["a", "b"]\n</tool_call>', "must be a JSON object", id="not-an-object"),
        pytest.param('<tool_call>\n{"arguments": {"q": 1}}\n</tool_call>', 'no "name"', id="no-name"),
        pytest.param(
            '<tool_call>\n{"name": "f", "arguments": [1, 2]}\n</tool_call>',
            '"arguments" must be a JSON object',
            id="args-list",
        ),
        pytest.param(
            '<tool_call>\n{"name": "f", "arguments": "not json"}\n</tool_call>',
            "string that is not a JSON object",
            id="args-bad-string",
        ),
        pytest.param("<tool_call>\nI will call get_weather now\n</tool_call>", "expected a JSON object", id="not-json"),
        pytest.param("<tool_call>\nget_weather('Oslo')\n</tool_call>", "must be given by name", id="py-positional"),
        pytest.param("<tool_call>\nf(x=open('a'))\n</tool_call>", "not a literal", id="py-not-literal"),
        pytest.param("<tool_call>\nf(x={1, 2})\n</tool_call>", "not JSON values", id="py-set"),
        pytest.param('<tool_call>\n{"name": "f", "arguments": {"x": NaN}}\n</tool_call>', "not valid JSON", id="nan"),
        pytest.param(
            '<tool_call>\n{"name": "f", "arguments": {"x": "a}}\n</tool_call>', "not valid JSON", id="unclosed-string"
        ),
    ],
)
def test_unreadable_calls_are_refused(block: str, fragment: str) -> None:
    r = parse(block, family="qwen3")
    assert r.tool_calls == []
    (err,) = r.errors
    assert fragment in err.reason, err.reason
    assert "<tool_call>" in err.reason  # tells the model the right shape


# ------------------------------------------------------------------------------------------ reasoning


def test_reasoning_split_out() -> None:
    r = parse("<think>\nThe user wants weather.\n</think>\n\nIt is sunny.", family="qwen3")
    assert r.reasoning == "The user wants weather."
    assert r.content == "It is sunny."


def test_prompt_opened_reasoning_only_closing_tag() -> None:
    r = parse("I should look it up.\n</think>\n\n" + hermes("search", '{"query": "x"}'), family="qwen3", tools=TOOLS)
    assert r.reasoning == "I should look it up."
    assert calls(r) == [("call_0", "search", {"query": "x"})]
    assert r.content == ""


def test_empty_think_block_gives_empty_reasoning() -> None:
    r = parse("<think>\n\n</think>\n\nHi", family="qwen3")
    assert r.reasoning == "" and r.content == "Hi"


def test_call_inside_think_is_reported_not_returned() -> None:
    # vLLM issue 39056 / Qwen-Agent: calls before </think> must not run
    text = (
        "<think>\nMaybe "
        + hermes("search", '{"query": "x"}')
        + "\n</think>\n\n"
        + hermes("get_weather", '{"city": "Oslo"}')
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_1", "get_weather", {"city": "Oslo"})]
    (err,) = r.errors
    assert err.index == 0 and err.name == "search"
    assert "inside the <think> reasoning" in err.reason and "</think>" in err.reason
    assert "Maybe" in (r.reasoning or "")


def test_call_before_bare_closing_think_is_reported() -> None:
    text = hermes("search", '{"query": "x"}') + "\n</think>\n\nDone."
    r = parse(text, family="qwen3", tools=TOOLS)
    assert r.tool_calls == [] and r.content == "Done."
    assert "inside the <think> reasoning" in r.errors[0].reason


def test_unclosed_think_ends_at_first_call() -> None:
    text = "<think>\nI need the weather.\n" + hermes("get_weather", '{"city": "Oslo"}')
    r = parse(text, family="qwen3", tools=TOOLS)
    assert r.reasoning == "I need the weather."
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]


def test_prompt_opened_think_without_closing_tag() -> None:
    text = "Still reasoning about the weather...\n" + hermes("get_weather", '{"city": "Oslo"}')
    r = parse(text, family="qwen3", tools=TOOLS, prompt_opened_think=True)
    assert r.reasoning == "Still reasoning about the weather..."
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]
    cut = parse("Hmm, the user wants", family="qwen3", prompt_opened_think=True)
    assert cut.reasoning == "Hmm, the user wants" and cut.content == ""
    # without the flag the same text is content: parse cannot know what the prompt ended with
    assert parse("Hmm, the user wants", family="qwen3").content == "Hmm, the user wants"
    # with </think> present the flag changes nothing
    both = "plan</think>\n\nanswer"
    assert parse(both, family="qwen3", prompt_opened_think=True) == parse(both, family="qwen3")


def test_fenced_calls_leave_no_fence_in_content() -> None:
    text = "```xml\n" + xml_call("search", query="a") + "\n```"
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "a"})] and r.content == ""


@pytest.mark.parametrize("text", ["```", "```json", "```\n"])
def test_a_lone_fence_without_calls_is_content(text: str) -> None:
    """Found by the fuzz test: a completion that is only a fence marker was returned as empty content."""
    for family in ("qwen2.5", "qwen3", "qwen3-coder"):
        r = parse(text, family=family, tools=TOOLS)
        assert r.content == text.strip() and r.tool_calls == [] and r.errors == []
    # an unmatched fence before a call is content too (only a pair of fences around calls is dropped)
    r = parse(text + "\n" + xml_call("search", query="a"), family="qwen3-coder", tools=TOOLS)
    assert r.content == text.strip() and calls(r) == [("call_0", "search", {"query": "a"})]


def test_unclosed_think_without_calls_is_all_reasoning() -> None:
    r = parse("<think>\nstill thinking", family="qwen3")
    assert r.reasoning == "still thinking" and r.content == ""


# ------------------------------------------------------------------------------------------ Qwen3-Coder XML


def xml_call(name: str, **params: str) -> str:
    body = "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in params.items())
    return f"<tool_call>\n<function={name}>\n{body}</function>\n</tool_call>"


def test_xml_parameters_typed_by_schema() -> None:
    text = xml_call("search", query="  spaced  ", tags='["a", "b"]', exact="true", limit="null", score="2.5")
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert r.errors == []
    assert calls(r) == [
        ("call_0", "search", {"query": "  spaced  ", "tags": ["a", "b"], "exact": True, "limit": None, "score": 2.5})
    ]


def test_xml_integer_and_union_integer() -> None:
    r = parse(
        xml_call("search", query="q", limit="7") + xml_call("get_weather", city="Oslo", days="3"),
        family="qwen3-coder",
        tools=TOOLS,
    )
    assert calls(r) == [
        ("call_0", "search", {"query": "q", "limit": 7}),
        ("call_1", "get_weather", {"city": "Oslo", "days": 3}),
    ]


def test_xml_multiline_string_keeps_inner_newlines() -> None:
    code = "def f():\n    return 1\n"
    r = parse(xml_call("write", path="a.py", content=code), family="qwen3-coder")
    assert r.tool_calls[0].arguments == {"path": "a.py", "content": code}


def test_xml_python_literal_list_is_repaired() -> None:
    r = parse(xml_call("search", query="q", tags="['python', 'tutorial']"), family="qwen3-coder", tools=TOOLS)
    assert r.tool_calls[0].arguments["tags"] == ["python", "tutorial"]


def test_xml_without_tools_keeps_strings_but_reads_json_objects() -> None:
    r = parse(xml_call("f", zip="03106", opts='{"a": 1}'), family="qwen3-coder")
    assert r.tool_calls[0].arguments == {"zip": "03106", "opts": {"a": 1}}


def test_xml_missing_closing_tags() -> None:
    text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n<parameter=days>\n2\n</function>"
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo", "days": 2})]


def test_xml_bare_function_without_tool_call_wrapper() -> None:
    r = parse(
        "Sure.\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>",
        family="qwen3-coder",
        tools=TOOLS,
    )
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})] and r.content == "Sure."


def test_xml_two_functions_in_one_block() -> None:
    one = "<function=search>\n<parameter=query>\n{}\n</parameter>\n</function>\n"
    text = "<tool_call>\n" + one.format("a") + one.format("b") + "</tool_call>"
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert [c.arguments["query"] for c in r.tool_calls] == ["a", "b"]


def test_xml_refusals() -> None:
    r = parse(xml_call("get_weather", city="Oslo", days="soon"), family="qwen3-coder", tools=TOOLS)
    assert "'days': expected integer, got string 'soon'" in r.errors[0].reason
    r = parse("<tool_call>\n<function=get_weather>\n<parameter=city>\nOs", family="qwen3-coder", tools=TOOLS)
    assert "cut off" in r.errors[0].reason and r.errors[0].name == "get_weather"
    r = parse(
        xml_call("search", query="a").replace("</parameter>", "</parameter>\n<parameter=query>\nb\n</parameter>", 1),
        family="qwen3-coder",
    )
    assert "given twice" in r.errors[0].reason
    r = parse("<tool_call>\n<function=>\n</function>\n</tool_call>", family="qwen3-coder")
    assert "no tool name" in r.errors[0].reason
    r = parse(xml_call("nope", a="1"), family="qwen3-coder", tools=TOOLS)
    assert "no tool named 'nope'" in r.errors[0].reason


def test_xml_call_in_hermes_family_and_json_in_coder_family() -> None:
    assert calls(parse(xml_call("search", query="a"), family="qwen2.5", tools=TOOLS)) == [
        ("call_0", "search", {"query": "a"})
    ]
    assert calls(parse(hermes("search", '{"query": "a"}'), family="qwen3-coder", tools=TOOLS)) == [
        ("call_0", "search", {"query": "a"})
    ]


# ------------------------------------------------------------------------------------------ API edges


def test_unknown_family_and_bad_tools_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown Qwen family"):
        parse("x", family="qwen4")
    with pytest.raises(ConfigError, match="no function name"):
        parse("x", family="qwen3", tools=[{"type": "function", "function": {}}])
    with pytest.raises(ConfigError, match="must be a list"):
        parse("x", family="qwen3", tools={"name": "f"})  # type: ignore[arg-type]


def test_internal_error_becomes_reported_error_outside_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", False)

    def boom(text: str) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(parse_module, "split_reasoning", boom)
    r = parse("<tool_call>{}</tool_call>", family="qwen3")
    assert r.tool_calls == [] and "internal parser error" in r.errors[0].reason


# ------------------------------------------------------------------------------------------ tag look-alikes


def test_missing_brace_with_closing_tag_inside_string() -> None:
    text = '<tool_call>\n{"name": "search", "arguments": {"query": "what is </tool_call>?"}\n</tool_call>\n' + hermes(
        "get_weather", '{"city": "Oslo"}'
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [
        ("call_0", "search", {"query": "what is </tool_call>?"}),
        ("call_1", "get_weather", {"city": "Oslo"}),
    ]


def test_bare_fenced_call_keeps_tag_text_inside_string() -> None:
    text = '```json\n{"name": "search", "arguments": {"query": "a </tool_call> b"}}\n```'
    assert calls(parse(text, family="qwen2.5", tools=TOOLS)) == [("call_0", "search", {"query": "a </tool_call> b"})]


def test_content_mentioning_a_tag_keeps_it() -> None:
    r = parse("Qwen ends calls with </tool_call> and functions with </function>.", family="qwen2.5")
    assert r.content == "Qwen ends calls with </tool_call> and functions with </function>."


def test_text_after_end_of_turn_is_not_part_of_the_turn() -> None:
    text = hermes("search", '{"query": "a"}') + "<|im_end|>\n<|im_start|>user\n" + hermes("search", '{"query": "b"}')
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "a"})] and r.content == ""
    assert parse("Hi<|im_start|>assistant\nagain", family="qwen3").content == "Hi"


def test_turn_end_token_inside_a_call_ends_the_turn() -> None:
    """A model stops on <|im_end|>: one inside a string argument is where the turn ended, so the call is cut
    there and reported as malformed, not run with the rest of the text."""
    r = parse(hermes("search", '{"query": "a<|im_end|>b"}'), family="qwen2.5", tools=TOOLS)
    assert r.tool_calls == [] and len(r.errors) == 1 and r.errors[0].raw.endswith('"a')


def test_calls_after_a_made_up_tool_response_are_refused() -> None:
    text = (
        hermes("get_weather", '{"city": "Oslo"}')
        + '\n<tool_response>\n{"temp": 21}\n</tool_response>\nIt is 21 degrees. '
        + hermes("search", '{"query": "what to wear at 21 degrees"}')
    )
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "get_weather", {"city": "Oslo"})]
    assert r.content == ""  # the invented result is not shown as the model's answer
    (err,) = r.errors
    assert err.index == 1 and err.name == "search" and "<tool_response>" in err.reason


def test_stray_closing_tags_at_content_edges_are_dropped() -> None:
    r = parse("</think>\n\nDone.\n</tool_call><|im_end|><|endoftext|>", family="qwen3")
    assert r.content == "Done." and r.reasoning == ""


def test_xml_value_containing_closing_tag() -> None:
    r = parse(xml_call("search", query="what is </tool_call>?"), family="qwen3-coder", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "what is </tool_call>?"})]
    unclosed = "<tool_call>\n<function=search>\n<parameter=query>\nsay </tool_call> now\n</function>\n</tool_call>"
    assert calls(parse(unclosed, family="qwen3-coder")) == [("call_0", "search", {"query": "say </tool_call> now"})]


def test_xml_unclosed_parameter_and_function_then_next_call() -> None:
    text = "<tool_call>\n<function=search>\n<parameter=query>\na\n</tool_call>\n" + xml_call("get_weather", city="Oslo")
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "a"}), ("call_1", "get_weather", {"city": "Oslo"})]


def test_xml_cut_off_before_function_close_is_refused() -> None:
    text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n<param"
    r = parse(text, family="qwen3-coder", tools=TOOLS)
    assert r.tool_calls == [] and "cut off" in r.errors[0].reason


# ------------------------------------------------------------------------------------------ pathological input

N = 5000


@pytest.mark.timeout(60)  # a hang guard: each of these is linear in the input (quadratic scans were removed)
@pytest.mark.parametrize(
    ("text", "n_calls", "n_errors"),
    [
        pytest.param("<tool_call>" * N, 0, 1, id="openers"),
        pytest.param("<tool_call>{" * N, 0, N, id="openers-with-brace"),
        pytest.param("</tool_call>" * N + "</think>" * N, 0, 0, id="stray-closers"),
        pytest.param("<tool_call>" + "[" * N, 0, 1, id="deep-brackets"),
        pytest.param('<tool_call>{"name": "a", "arguments": {"x": "' + "\\" * N, 0, 1, id="backslashes"),
        pytest.param("<tool_call><function=f>" + "<parameter=a>x" * N, 0, 1, id="repeated-parameter"),
        pytest.param("<function=f></function>" * N, N, 0, id="many-xml-calls"),
        pytest.param('<tool_call>{"name": "f", "arguments": {"q": "x}</tool_call>' * N, 0, N, id="unclosed-strings"),
        pytest.param('<tool_call>{"name": "f", "arguments": {}</tool_call>' * N, N, 0, id="missing-braces"),
        pytest.param("<tool_call>f(" + "(" * N + ")</tool_call>", 0, 1, id="python-nesting"),
        pytest.param("<think>" * N + "x", 0, 0, id="openers-of-think"),
    ],
)
def test_pathological_inputs(text: str, n_calls: int, n_errors: int) -> None:
    r = parse(text, family="qwen3")
    assert (len(r.tool_calls), len(r.errors)) == (n_calls, n_errors)


def test_tool_response_tag_inside_a_string_argument_is_not_a_made_up_response() -> None:
    """Regression (found by the fuzz test): the tag inside a JSON string must not cut the call."""
    text = '<tool_call>\n{"name": "plan", "arguments": {"meta": {"k": "<tool_response>"}}}\n</tool_call>'
    r = parse(text, family="qwen2.5")
    assert r.errors == []
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("plan", {"meta": {"k": "<tool_response>"}})]
    # an unclosed call whose string mentions the tag is still read as one call
    r = parse(text.removesuffix("\n</tool_call>"), family="qwen2.5")
    assert [c.arguments for c in r.tool_calls] == [{"meta": {"k": "<tool_response>"}}]
    # while a response written after the call block is still refused as made up
    fake = text + '\n<tool_response>\nok\n</tool_response>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    r = parse(fake, family="qwen2.5")
    assert [c.name for c in r.tool_calls] == ["plan"]
    assert [e.name for e in r.errors] == ["b"] and "<tool_response>" in r.errors[0].reason


@pytest.mark.parametrize("tag", ["<think>", "</think>", "<think>x</think>"])
@pytest.mark.parametrize("reasoning", ["", "<think>\nLook it up.\n</think>\n\n"])
def test_reasoning_tags_inside_a_string_argument_are_argument_text(tag: str, reasoning: str) -> None:
    """Regression (was a documented limit): a tag inside a call's string argument is not reasoning markup."""
    text = reasoning + hermes("search", '{"query": "what does ' + tag + ' mean"}') + "\nSearching."
    r = parse(text, family="qwen3", tools=TOOLS)
    assert r.errors == []
    assert calls(r) == [("call_0", "search", {"query": f"what does {tag} mean"})]
    assert r.content == "Searching."
    assert r.reasoning == ("Look it up." if reasoning else None)
    # the same in a Qwen3-Coder XML parameter value
    xml = reasoning + xml_call("search", query=f"what does {tag} mean")
    r = parse(xml, family="qwen3-coder", tools=TOOLS)
    assert r.errors == [] and [c.arguments for c in r.tool_calls] == [{"query": f"what does {tag} mean"}]


def test_reasoning_after_a_call_is_still_reasoning() -> None:
    # a <think> block outside any call keeps its meaning, also when a call before it mentions the tag
    text = hermes("search", '{"query": "<think>"}') + "\n<think>\nNow wait.\n</think>\nDone."
    r = parse(text, family="qwen3", tools=TOOLS)
    assert calls(r) == [("call_0", "search", {"query": "<think>"})]
    assert r.reasoning == "Now wait." and r.content == "Done."
