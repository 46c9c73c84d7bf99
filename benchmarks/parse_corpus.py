"""A seeded corpus of Qwen completions with the tool-call faults small models really make.

Used by ``benchmarks/parse.py`` (recovery vs vLLM's hermes rule) and as seeds by the parse fuzz test.
Each ``Sample`` knows the calls the model *intended* (``intended``): a call written inside ``<think>`` is
not intended; a call cut off or garbled beyond repair is intended but cannot be recovered by anyone.

Faults (sources: vLLM issues 17790, 21544, 22885, 32638, 39056, 22975; Qwen-Agent; mlx-lm qwen3_coder PRs):
single quotes, trailing commas, Python literals, missing ``</tool_call>`` (at the end or between calls),
missing or extra ``}``, two objects in one block, arguments as a JSON string, a ```json fence in the block,
``parameters`` instead of ``arguments``, a ``</tool_call>`` or braces inside a string argument, a call inside
``<think>``, ``<think>`` never closed, a bare fenced call with no tags, a truncated last call, one garbled
call among good ones, a made-up ``<tool_response>`` followed by another call (not intended: it acts on an
invented result); for Qwen3-Coder XML: missing ``</parameter>``/``</function>``/``</tool_call>``,
Python list literals, a call inside ``<think>``, truncation.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HERMES_FAULTS", "TOOLS", "XML_FAULTS", "Sample", "make_corpus", "make_sample"]

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather and forecast for a city.",
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
    },
    {
        "type": "function",
        "function": {
            "name": "search_web",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "max_results": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
                    "safe": {"type": "boolean", "default": True},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "write_file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_sql",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "params": {"type": "array", "items": {}}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "create_ticket",
            "parameters": {
                "type": "object",
                "$defs": {
                    "Customer": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                        "required": ["name"],
                    }
                },
                "properties": {
                    "title": {"type": "string"},
                    "priority": {"type": "string", "enum": ["low", "normal", "high"]},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "customer": {"$ref": "#/$defs/Customer"},
                    "estimate_hours": {"type": "number"},
                },
                "required": ["title", "priority"],
            },
        },
    },
]

CITIES = ["Paris", "Oslo", "São Paulo", "北京", "New York", "Zürich", "Cape Town", "東京"]
QUERIES = [
    "latest Qwen release notes",
    "how to reverse a list in python",
    "上海 天气 明天",
    'python "asyncio.gather" exceptions',
    "mkdir -p test/{a,b}",
    "what does </tool_call> mean",
    "O'Reilly asyncio book",
]
CODE = [
    'def add(a, b):\n    """Add two numbers."""\n    return a + b\n',
    'import json\nprint(json.dumps({"ok": True}))\n',
    "for i in range(3):\n    print(f'{i}: {{}}')\n",
    "# 中文注释\nx = {'a': [1, 2, 3]}\n",
]
PROSE = [
    "",
    "",
    "I'll check that for you.",
    "Let me look that up.",
    "好的，我来查询一下。",
    "Sure! Calling the tools now.",
]
THOUGHTS = [
    "The user wants the weather. I should call get_weather.",
    "I need to search first, then write the file.",
    "用户想要查询天气，我需要调用工具。",
]

HERMES_FAULTS = [
    "clean",
    "clean",
    "clean",
    "single_quotes",
    "trailing_comma",
    "python_literals",
    "missing_close_at_end",
    "missing_close_between",
    "missing_brace",
    "extra_brace",
    "two_objects_one_block",
    "args_as_string",
    "json_fence",
    "parameters_key",
    "call_in_think",
    "unclosed_think",
    "bare_fenced_json",
    "truncated_last",
    "one_garbled",
    "made_up_response",
]
XML_FAULTS = [
    "clean",
    "clean",
    "missing_param_close",
    "missing_function_close",
    "missing_close_at_end",
    "python_list_literal",
    "call_in_think",
    "truncated_last",
]


@dataclass
class Sample:
    """One completion, the calls the model meant to make, and the fault injected."""

    text: str
    family: str
    fault: str
    intended: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _call(rng: random.Random) -> tuple[str, dict[str, Any]]:
    name = rng.choice([t["function"]["name"] for t in TOOLS])
    if name == "get_weather":
        args: dict[str, Any] = {"city": rng.choice(CITIES)}
        if rng.random() < 0.6:
            args["days"] = rng.randint(1, 7)
        if rng.random() < 0.4:
            args["unit"] = rng.choice(["celsius", "fahrenheit"])
    elif name == "search_web":
        args = {"query": rng.choice(QUERIES)}
        if rng.random() < 0.5:
            args["max_results"] = rng.choice([None, 3, 10])
        if rng.random() < 0.5:
            args["safe"] = rng.random() < 0.5
    elif name == "write_file":
        args = {"path": rng.choice(["src/add.py", "notes/说明.md", "a b/c.txt"]), "content": rng.choice(CODE)}
    elif name == "run_sql":
        args = {"query": "SELECT name FROM users WHERE id = ? AND active = ?"}
        if rng.random() < 0.6:
            args["params"] = [rng.randint(1, 99), rng.random() < 0.5]
    else:
        args = {"title": rng.choice(["Login fails", "退款申请", "Crash on 'save'"]), "priority": "high"}
        if rng.random() < 0.6:
            args["tags"] = rng.sample(["bug", "ui", "billing", "urgent"], 2)
        if rng.random() < 0.5:
            args["customer"] = {"name": "Ada Lovelace", "email": "ada@example.com"}
        if rng.random() < 0.3:
            args["estimate_hours"] = 2.5
    return name, args


def _py_repr(value: Any) -> str:
    """What a model writes when it thinks in Python: single quotes, True/False/None."""
    return repr(value)


def _hermes_body(name: str, args: dict[str, Any], fault: str) -> str:
    obj = {"name": name, "arguments": args}
    if fault == "single_quotes":
        return _py_repr(obj)
    if fault == "python_literals":
        s = json.dumps(obj, ensure_ascii=False)
        return s.replace("true", "True").replace("false", "False").replace("null", "None")
    if fault == "trailing_comma":
        return json.dumps(obj, ensure_ascii=False)[:-2] + "},}"
    if fault == "args_as_string":
        return json.dumps({"name": name, "arguments": json.dumps(args, ensure_ascii=False)}, ensure_ascii=False)
    if fault == "parameters_key":
        return json.dumps({"name": name, "parameters": args}, ensure_ascii=False)
    return json.dumps(obj, ensure_ascii=False)


def _xml_body(name: str, args: dict[str, Any], fault: str) -> str:
    parts = [f"<function={name}>\n"]
    for k, v in args.items():
        if isinstance(v, str):
            text = v
        elif fault == "python_list_literal" and isinstance(v, list | dict):
            text = repr(v)
        else:
            text = json.dumps(v, ensure_ascii=False)
        close = "" if fault == "missing_param_close" else "</parameter>\n"
        parts.append(f"<parameter={k}>\n{text}\n{close}")
    if fault != "missing_function_close":
        parts.append("</function>")
    return "".join(parts)


def make_sample(rng: random.Random) -> Sample:
    """One realistic completion with one fault (or none)."""
    family = rng.choice(["qwen2.5", "qwen3", "qwen3", "qwen3-coder"])
    xml = family == "qwen3-coder"
    fault = rng.choice(XML_FAULTS if xml else HERMES_FAULTS)
    if family == "qwen2.5" and fault in ("call_in_think", "unclosed_think"):
        family = "qwen3"
    n = rng.choice([1, 1, 1, 2, 2, 3])
    if fault in ("two_objects_one_block", "missing_close_between", "one_garbled"):
        n = max(n, 2)
    calls = [_call(rng) for _ in range(n)]
    intended = list(calls)
    prose = rng.choice(PROSE)
    think = ""
    if family == "qwen3" and rng.random() < 0.6:
        think = f"<think>\n{rng.choice(THOUGHTS)}\n</think>\n\n"

    if xml:
        blocks = [f"<tool_call>\n{_xml_body(nm, a, fault)}\n</tool_call>" for nm, a in calls]
        if fault == "missing_close_at_end":
            blocks[-1] = blocks[-1].removesuffix("\n</tool_call>")
    else:
        blocks = [f"<tool_call>\n{_hermes_body(nm, a, fault)}\n</tool_call>" for nm, a in calls]
        if fault == "missing_close_at_end":
            blocks[-1] = blocks[-1].removesuffix("\n</tool_call>")
        elif fault == "missing_close_between":
            blocks[0] = blocks[0].removesuffix("\n</tool_call>")
        elif fault == "missing_brace":
            i = rng.randrange(n)
            blocks[i] = blocks[i].replace("}\n</tool_call>", "\n</tool_call>")
        elif fault == "extra_brace":
            i = rng.randrange(n)
            blocks[i] = blocks[i].replace("}\n</tool_call>", "}}\n</tool_call>")
        elif fault == "json_fence":
            fence = "<tool_call>\n```json\n", "\n```\n</tool_call>"
            blocks = [b.replace("<tool_call>\n", fence[0]).replace("\n</tool_call>", fence[1]) for b in blocks]
        elif fault == "two_objects_one_block":
            bodies = "\n".join(_hermes_body(nm, a, "clean") for nm, a in calls)
            blocks = [f"<tool_call>\n{bodies}\n</tool_call>"]
        elif fault == "one_garbled":
            i = rng.randrange(n)
            nm, a = calls[i]
            blocks[i] = f'<tool_call>\n{{"name": "{nm}", "arguments": {{"{next(iter(a))}": }}}}\n</tool_call>'
        elif fault == "made_up_response":  # the model invents the result and calls again on it
            follow = _call(rng)
            blocks.append('<tool_response>\n{"status": "ok"}\n</tool_response>\nDone. ')
            blocks.append(f"<tool_call>\n{_hermes_body(*follow, 'clean')}\n</tool_call>")
        elif fault == "bare_fenced_json":
            blocks = ["```json\n" + _hermes_body(*calls[0], "clean") + "\n```"]
            intended = calls[:1]
            prose = ""

    if fault == "truncated_last":
        last = blocks[-1]
        blocks[-1] = last[: rng.randrange(len("<tool_call>\n") + 5, len(last) - len("\n</tool_call>") - 2)]
    if fault == "call_in_think":
        planned = _call(rng)
        body = _xml_body(*planned, "clean") if xml else _hermes_body(*planned, "clean")
        think = f"<think>\nI could call:\n<tool_call>\n{body}\n</tool_call>\nBut first the other one.\n</think>\n\n"
        family = "qwen3-coder" if xml else "qwen3"
    if fault == "unclosed_think":
        think = f"<think>\n{rng.choice(THOUGHTS)}\n"

    text = think + prose + ("\n" if prose else "") + "\n".join(blocks)
    return Sample(text=text, family=family, fault=fault, intended=intended)


def make_corpus(n: int, seed: int = 0) -> list[Sample]:
    """``n`` samples, the same for the same seed."""
    rng = random.Random(seed)
    return [make_sample(rng) for _ in range(n)]
