"""Produce the golden render outputs in tests/qwen/golden/ with transformers' real Jinja rendering.

The official chat templates are not part of this repository. Fetch them yourself (each Qwen checkpoint's
``tokenizer_config.json`` ``chat_template``, or llama.cpp's ``models/templates/``) into one directory:

    Qwen-Qwen2.5-7B-Instruct.jinja   (family qwen2.5)
    Qwen-Qwen3-0.6B.jinja            (family qwen3)
    Qwen3-Coder.jinja                (family qwen3-coder)

then run ``python scripts/make_goldens.py --templates DIR [--fuzz N]``. For every case below and every family it
applies to, the script calls ``tokenizer.apply_chat_template(..., chat_template=<official>, tokenize=False)``
and writes ``tests/qwen/golden/<family>.json``: the inputs (messages, tools, options) and the expected text.

Some cases hold inputs that the official templates mishandle (``content=None``, arguments as a JSON string):
for those, ``official_messages`` is the equivalent well-formed input given to the official template, and
``render`` must produce the same text from the raw ``messages`` (that is its documented normalisation).

``--fuzz N`` additionally compares ``render`` with the official templates on N random chats (hypothesis):
roles in any order, reasoning, parallel calls with nested argument values, odd tool schemas.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "tests" / "qwen" / "golden"
TEMPLATE_FILES = {
    "qwen2.5": "Qwen-Qwen2.5-7B-Instruct.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "qwen3-coder": "Qwen3-Coder.jinja",
}
ALL = ("qwen2.5", "qwen3", "qwen3-coder")

# ------------------------------------------------------------------------------------------------ tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Temperature unit"},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search_products",
        "description": "  Search the shop catalogue.\n",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Free-text query"},
                "filters": {
                    "type": "object",
                    "description": "Nested filters",
                    "properties": {
                        "price": {
                            "type": "object",
                            "properties": {"min": {"type": "number"}, "max": {"type": "number"}},
                        },
                        "tags": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["price"],
                },
                "limit": {"type": "integer", "default": 10, "minimum": 1, "nullable": True},
                "in_stock": {"type": "boolean", "default": False},
            },
            "required": ["query"],
        },
    },
}
RUN_PYTHON = {
    "type": "function",
    "function": {
        "name": "run_python",
        "description": "运行一段 Python 代码并返回标准输出。",
        "parameters": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Python 源代码"},
                "timeout-s": {"type": "integer", "description": "超时（秒）", "$comment": "dash in the name"},
                "env vars": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
            },
            "required": ["code"],
        },
        "return": {"type": "string", "description": "stdout"},
    },
}
NO_ARGS = {
    "type": "function",
    "function": {
        "name": "list_orders",
        "description": "List the user's orders.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def call(name: str, arguments: Any, call_id: str = "call_0") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_msg(content: str, call_id: str = "call_0", name: str | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"role": "tool", "tool_call_id": call_id, "content": content}
    if name:
        m["name"] = name
    return m


SYS = {"role": "system", "content": "You are a terse assistant. Answer in one sentence."}

# ------------------------------------------------------------------------------------------------ cases
# name, families, messages, tools, kwargs (add_generation_prompt / enable_thinking), official_messages

CASES: list[dict[str, Any]] = [
    {"name": "user_only", "messages": [{"role": "user", "content": "Hello!"}]},
    {"name": "system_user", "messages": [SYS, {"role": "user", "content": "What is 2+2?"}]},
    {
        "name": "multi_turn_plain",
        "messages": [
            SYS,
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": "And 3+3?"},
        ],
    },
    {
        "name": "no_generation_prompt",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "system_in_the_middle",
        "messages": [
            {"role": "user", "content": "Translate 'cat' to French."},
            {"role": "assistant", "content": "chat"},
            {"role": "system", "content": "From now on answer in German."},
            {"role": "user", "content": "And 'dog'?"},
        ],
    },
    {"name": "tools_no_system", "messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER]},
    {
        "name": "tools_with_system",
        "messages": [SYS, {"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER, SEARCH],
    },
    {
        "name": "single_call_round_trip",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"})]},
            tool_msg('{"temperature": 18, "sky": "cloudy"}'),
        ],
        "tools": [WEATHER],
    },
    {
        "name": "call_with_content",
        "messages": [
            SYS,
            {"role": "user", "content": "Weather in Paris in fahrenheit?"},
            {
                "role": "assistant",
                "content": "Let me check that for you.",
                "tool_calls": [call("get_weather", {"city": "Paris", "unit": "fahrenheit"})],
            },
            tool_msg("64F, light rain"),
            {"role": "assistant", "content": "It is 64°F with light rain in Paris."},
        ],
        "tools": [WEATHER],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "parallel_calls_merged_responses",
        "messages": [
            {"role": "user", "content": "Compare the weather in Paris and Berlin."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call("get_weather", {"city": "Paris"}, "call_0"),
                    call("get_weather", {"city": "Berlin"}, "call_1"),
                ],
            },
            tool_msg("Paris: 18C", "call_0", "get_weather"),
            tool_msg("Berlin: 12C", "call_1", "get_weather"),
            {"role": "assistant", "content": "Paris is 6 degrees warmer."},
            {"role": "user", "content": "Thanks! And Rome?"},
        ],
        "tools": [WEATHER],
    },
    {
        "name": "three_parallel_calls",
        "messages": [
            {"role": "user", "content": "Weather in Paris, Rome and Oslo?"},
            {
                "role": "assistant",
                "content": "Checking all three.",
                "tool_calls": [
                    call("get_weather", {"city": "Paris"}, "a"),
                    call("get_weather", {"city": "Rome", "unit": "celsius"}, "b"),
                    call("get_weather", {"city": "Oslo"}, "c"),
                ],
            },
            tool_msg("18", "a"),
            tool_msg("25", "b"),
            tool_msg("3", "c"),
        ],
        "tools": [WEATHER],
    },
    {
        "name": "nested_arguments",
        "messages": [
            {"role": "user", "content": "Red sneakers between 10 and 50.5 euros, in stock, max 5."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call(
                        "search_products",
                        {
                            "query": "sneakers",
                            "filters": {"price": {"min": 10, "max": 50.5}, "tags": ["红色", "sale", None]},
                            "limit": 5,
                            "in_stock": True,
                        },
                    )
                ],
            },
            tool_msg('[{"id": 1, "name": "Runner", "price": 42.0}]'),
        ],
        "tools": [SEARCH],
    },
    {
        "name": "chinese_tools_and_content",
        "messages": [
            {"role": "system", "content": "你是一个有用的助手。"},
            {"role": "user", "content": "今天北京天气怎么样？"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "北京"})]},
            tool_msg("晴，25°C，微风"),
            {"role": "assistant", "content": "北京今天晴，25°C，有微风。"},
            {"role": "user", "content": "用 Python 算一下 25 的平方。"},
        ],
        "tools": [WEATHER, RUN_PYTHON],
    },
    {
        "name": "code_arguments_multiline",
        "messages": [
            {"role": "user", "content": "Print the first 3 squares."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call(
                        "run_python", {"code": 'for i in range(3):\n    print(i * i, "\\t", end="")\n', "timeout-s": 5}
                    )
                ],
            },
            tool_msg("0 \t1 \t4 \t"),
        ],
        "tools": [RUN_PYTHON],
    },
    {
        "name": "special_characters",
        "messages": [
            {"role": "user", "content": 'Quote "this" & <that> \\ back\\slash, emoji 🦙 and </tool_call> text.'},
            {"role": "assistant", "content": "Done: \"ok\" — 'fine' 😀"},
            {"role": "user", "content": "Again, with\ttabs\r\nand CRLF."},
        ],
    },
    {
        "name": "empty_arguments_call",
        "messages": [
            {"role": "user", "content": "What did I order?"},
            {"role": "assistant", "content": "", "tool_calls": [call("list_orders", {})]},
            tool_msg("[]"),
        ],
        "tools": [NO_ARGS],
    },
    # --- Qwen3 reasoning -----------------------------------------------------------------------------
    {
        "name": "reasoning_before_and_after_last_query",
        "messages": [
            {"role": "user", "content": "What is 17*23?"},
            {"role": "assistant", "reasoning_content": "17*23 = 17*20 + 17*3 = 340 + 51 = 391.", "content": "391"},
            {"role": "user", "content": "Add 9."},
            {"role": "assistant", "reasoning_content": "391 + 9 = 400.", "content": "400"},
        ],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "reasoning_inline_think_tags",
        "messages": [
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "content": "<think>\n91 = 7 * 13.\n</think>\n\nNo, 91 = 7 × 13."},
            {"role": "user", "content": "Is 97 prime?"},
            {"role": "assistant", "content": "<think>\nNo divisor up to 9 divides 97.\n</think>\n\nYes."},
        ],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "reasoning_history_then_new_query",
        "messages": [
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "reasoning_content": "91 = 7 * 13", "content": "No."},
            {"role": "user", "content": "Why?"},
        ],
    },
    {
        "name": "reasoning_multi_step_tools",
        "messages": [
            SYS,
            {"role": "user", "content": "Warmer: Paris or Berlin?"},
            {
                "role": "assistant",
                "reasoning_content": "I need Paris first.",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "Paris"}, "c1")],
            },
            tool_msg("18C", "c1"),
            {
                "role": "assistant",
                "reasoning_content": "\nNow Berlin.\n",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "Berlin"}, "c2")],
            },
            tool_msg("12C", "c2"),
        ],
        "tools": [WEATHER],
    },
    {
        "name": "reasoning_final_answer_after_tools",
        "messages": [
            {"role": "user", "content": "Warmer: Paris or Berlin?"},
            {
                "role": "assistant",
                "reasoning_content": "Check both.",
                "content": "",
                "tool_calls": [
                    call("get_weather", {"city": "Paris"}, "c1"),
                    call("get_weather", {"city": "Berlin"}, "c2"),
                ],
            },
            tool_msg("18C", "c1"),
            tool_msg("12C", "c2"),
            {"role": "assistant", "reasoning_content": "18 > 12.", "content": "Paris is warmer."},
        ],
        "tools": [WEATHER],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "last_assistant_without_reasoning",
        "messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "user_turn_of_tool_responses_is_not_a_query",
        "messages": [
            {"role": "user", "content": "Look it up."},
            {
                "role": "assistant",
                "reasoning_content": "Use the tool.",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "Lima"})],
            },
            {"role": "user", "content": "<tool_response>\n20C\n</tool_response>"},
            {"role": "assistant", "reasoning_content": "Got it.", "content": "20C in Lima."},
        ],
        "tools": [WEATHER],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "thinking_off",
        "messages": [{"role": "user", "content": "Quick: capital of France?"}],
        "kwargs": {"enable_thinking": False},
    },
    {
        "name": "thinking_off_with_tools_and_history",
        "messages": [
            SYS,
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Oslo"})]},
            tool_msg("3C"),
        ],
        "tools": [WEATHER],
        "kwargs": {"enable_thinking": False},
    },
    {
        "name": "thinking_on_explicit",
        "messages": [{"role": "user", "content": "Think hard: 2^10?"}],
        "kwargs": {"enable_thinking": True},
    },
    {
        "name": "chinese_reasoning",
        "messages": [
            {"role": "user", "content": "把“你好”翻译成英文。"},
            {"role": "assistant", "reasoning_content": "“你好”是问候语。", "content": "Hello."},
            {"role": "user", "content": "再翻译成法语。"},
            {"role": "assistant", "reasoning_content": "法语的问候是 Bonjour。", "content": "Bonjour."},
        ],
        "kwargs": {"add_generation_prompt": False},
    },
    # --- inputs the official templates mishandle; render normalises them ---------------------------------
    {
        "name": "normalise_content_none_with_call",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Paris"})]},
            tool_msg("18C"),
        ],
        "official_messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "Paris"})]},
            tool_msg("18C"),
        ],
        "tools": [WEATHER],
    },
    {
        "name": "normalise_string_arguments",
        "as_given": ("qwen3",),
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("get_weather", '{"city":"Paris","unit":"celsius"}')],
            },
            tool_msg("18C"),
        ],
        "official_messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "Paris", "unit": "celsius"})],
            },
            tool_msg("18C"),
        ],
        "tools": [WEATHER],
    },
    # --- Qwen3-Coder specifics (rendered for all families: the Hermes ones are facts too) ----------------
    {
        "name": "coder_typed_argument_values",
        "messages": [
            {"role": "user", "content": "Find 3 in-stock shoes under 40."},
            {
                "role": "assistant",
                "content": "  I'll search the catalogue.  ",
                "tool_calls": [
                    call(
                        "search_products",
                        {
                            "query": "shoes",
                            "limit": 3,
                            "in_stock": True,
                            "filters": {"price": {"max": 40}},
                            "tags": ["a", 1],
                        },
                    )
                ],
            },
            tool_msg("[]"),
            {"role": "assistant", "content": "Nothing matched."},
        ],
        "tools": [SEARCH],
        "kwargs": {"add_generation_prompt": False},
    },
    {
        "name": "coder_multiline_parameter",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "Write hello world to a file."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    call("run_python", {"code": "with open('a.txt', 'w') as f:\n    f.write('hello\\n')\nprint('ok')"})
                ],
            },
            tool_msg("ok"),
        ],
        "tools": [RUN_PYTHON, NO_ARGS],
    },
    {
        "name": "coder_tools_schema_variety",
        "messages": [{"role": "user", "content": "What can you do?"}],
        "tools": [SEARCH, RUN_PYTHON, NO_ARGS],
    },
    {
        "name": "bare_function_tool_schema",
        "messages": [{"role": "user", "content": "Weather?"}],
        "tools": [WEATHER["function"]],
    },
]


def _normalised(case: dict[str, Any], family: str) -> bool:
    """Whether the official template gets ``official_messages`` (not for a family listed in ``as_given``, whose
    template handles the raw input: Qwen3 inserts string arguments as they are)."""
    return "official_messages" in case and family not in case.get("as_given", ())


def render_official(tokenizer: Any, template: str, case: dict[str, Any], family: str) -> str:
    source = case["official_messages"] if _normalised(case, family) else case["messages"]
    messages = copy.deepcopy(source)
    kwargs = dict(case.get("kwargs") or {})
    add_gen = kwargs.pop("add_generation_prompt", True)
    return tokenizer.apply_chat_template(
        messages,
        tools=copy.deepcopy(case.get("tools")) or None,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=add_gen,
        **kwargs,
    )


def chat_strategies() -> tuple[Any, Any]:
    """Hypothesis strategies ``(messages, tools)`` for random chats in OpenAI shape (also used by the tests)."""
    from hypothesis import strategies as st

    pieces = [*"ab 北京\n\t<>/{}\"'😀_:", "<think>", "</think>", "<tool_response>", "</tool_response>"]
    text = st.lists(st.sampled_from(pieces), max_size=14).map("".join)
    scalar = st.one_of(text, st.integers(-5, 5), st.floats(allow_nan=False, width=32), st.booleans(), st.none())
    value = st.recursive(
        scalar, lambda ch: st.one_of(st.lists(ch, max_size=3), st.dictionaries(text, ch, max_size=3)), max_leaves=6
    )
    args = st.dictionaries(st.sampled_from(["city", "n", "flag", "opts", "x y"]), value, max_size=3)
    a_call = st.builds(lambda n, a: call(n, a), st.sampled_from(["f", "get_weather"]), args)
    thought = st.builds(lambda a, b: f"<think>\n{a}\n</think>\n\n{b}", text, text)
    message = st.one_of(
        st.builds(lambda c: {"role": "user", "content": c}, text),
        st.builds(lambda c: {"role": "user", "content": "<tool_response>\n" + c + "\n</tool_response>"}, text),
        st.builds(lambda c: {"role": "system", "content": c}, text),
        st.builds(lambda c: {"role": "tool", "content": c}, text),
        st.builds(
            lambda c, r, calls: (
                {"role": "assistant", "content": c, "tool_calls": calls}
                | ({} if r is None else {"reasoning_content": r})
            ),
            st.one_of(text, thought),
            st.one_of(st.none(), text),
            st.lists(a_call, max_size=3),
        ),
    )
    keys = ["type", "description", "enum", "required", "default", "items", "x-extra", "$ref", "nullable"]
    prop = st.one_of(st.fixed_dictionaries({}, optional=dict.fromkeys(keys, value)), text)
    fn = st.builds(
        lambda n, d, props, req: (
            {"name": n, "parameters": {"type": "object", "properties": props}}
            | ({} if d is None else {"description": d})
            | ({} if req is None else {"required": req})
        ),
        st.sampled_from(["f", "g"]),
        st.one_of(text, st.none()),
        st.dictionaries(st.sampled_from(["a", "b-c", "d e"]), prop, min_size=1, max_size=3),
        st.one_of(st.lists(text, max_size=2), st.none()),
    )
    tools = st.one_of(
        st.lists(st.one_of(st.builds(lambda f: {"type": "function", "function": f}, fn), fn), min_size=1, max_size=3),
        st.none(),
    )
    return st.lists(message, min_size=1, max_size=7), tools


def fuzz_against_official(templates: dict[str, str], examples: int) -> int:
    """Differential check: render() vs the official templates on ``examples`` random chats (hypothesis)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from tq_agents.models.qwen import load_qwen_tokenizer, render

    tok = load_qwen_tokenizer("qwen3")
    messages_st, tools_st = chat_strategies()
    counts = {"compared": 0, "official_failed": 0}

    def for_family(family: str):
        @settings(
            max_examples=max(1, examples // len(templates)),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(
            messages=messages_st,
            tools=tools_st,
            gen=st.booleans(),
            thinking=st.sampled_from([None, True, False]),
        )
        def check(family: str, messages: list, tools: list | None, gen: bool, thinking: bool | None) -> None:
            kw = {} if thinking is None else {"enable_thinking": thinking}
            try:
                expected = tok.apply_chat_template(
                    messages,
                    tools=tools,
                    chat_template=templates[family],
                    tokenize=False,
                    add_generation_prompt=gen,
                    **kw,
                )
            except Exception:
                counts["official_failed"] += 1
                return
            counts["compared"] += 1
            got = render(messages, tools, family=family, add_generation_prompt=gen, enable_thinking=thinking)
            assert got == expected, json.dumps(
                {"family": family, "messages": messages, "tools": tools}, ensure_ascii=False
            )

        return check

    for family in templates:
        for_family(family)(family)
    print(f"fuzz: render() == official template on {counts['compared']} random chats", end="")
    print(f" ({counts['official_failed']} inputs the official template could not render were skipped)")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--templates", type=Path, required=True, help="directory holding the official .jinja files")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    ap.add_argument("--fuzz", type=int, default=0, metavar="N", help="also compare render() on N random chats")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from tq_agents.models.qwen import load_qwen_tokenizer

    args.out.mkdir(parents=True, exist_ok=True)
    templates: dict[str, str] = {}
    for family, filename in TEMPLATE_FILES.items():
        path = args.templates / filename
        if not path.is_file():
            print(f"error: missing {path} (official {family} template)", file=sys.stderr)
            return 2
        templates[family] = path.read_text(encoding="utf-8")
    total = 0
    for family, template in templates.items():
        tokenizer = load_qwen_tokenizer(family)
        goldens = []
        for case in CASES:
            if family not in case.get("families", ALL):
                continue
            expected = render_official(tokenizer, template, case, family)
            golden = {
                "name": case["name"],
                "messages": case["messages"],
                "tools": case.get("tools"),
                "kwargs": case.get("kwargs") or {},
                "normalised": _normalised(case, family),
                "expected": expected,
            }
            goldens.append(golden)
        out = args.out / f"{family}.json"
        out.write_text(json.dumps(goldens, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{family}: {len(goldens)} cases -> {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
        total += len(goldens)
    print(f"total: {total} golden cases")
    return fuzz_against_official(templates, args.fuzz) if args.fuzz else 0


if __name__ == "__main__":
    raise SystemExit(main())
