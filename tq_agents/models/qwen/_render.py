"""Qwen chat prompts, byte for byte, without Jinja.

:func:`render` produces exactly the text that transformers' ``apply_chat_template`` produces with the
official chat template of each family (Qwen2.5-Instruct, Qwen3, Qwen3-Coder), verified against golden
outputs rendered by transformers itself (``scripts/make_goldens.py``, ``tests/qwen/golden/``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tq_agents.errors import ChatFormatError

__all__ = ["Family", "NormalizedCall", "NormalizedMessage", "normalize_messages", "normalize_tools", "render"]

Family = Literal["qwen2.5", "qwen3", "qwen3-coder"]
_FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")
_ROLES = ("system", "user", "assistant", "tool")

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
CODER_DEFAULT_SYSTEM = "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."

_HERMES_TOOLS_INTRO = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_HERMES_TOOLS_OUTRO = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)
_CODER_TOOLS_INTRO = "\n\nYou have access to the following functions:\n\n<tools>"
_CODER_TOOLS_OUTRO = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge and "
    "do not tell the user about function calls\n</IMPORTANT>"
)
_CODER_HANDLED_KEYS = ("type", "description", "enum", "required")


@dataclass
class NormalizedCall:
    """One tool call: a name and arguments as a mapping."""

    name: str
    arguments: dict[str, Any]
    text: str | None = None  # the arguments as given, when given as a JSON object string (Qwen3 inserts it as is)


@dataclass
class NormalizedMessage:
    """One message after input normalisation (see :func:`render`)."""

    role: str
    content: str
    reasoning_content: str | None = None
    tool_calls: list[NormalizedCall] = field(default_factory=list)


def _tojson(value: Any, where: str) -> str:
    """transformers' ``tojson``: ``json.dumps`` with ``ensure_ascii=False``, no sorting, default separators."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ChatFormatError(f"{where} is not JSON-serialisable: {e}", hint="use plain dict/list/str/number") from e


def _content(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        texts = []
        for j, part in enumerate(value):
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                raise ChatFormatError(
                    f"{where}[{j}] is not a text part",
                    hint='content parts must be {"type": "text", "text": "..."}; Qwen text models take no images',
                )
        return "".join(texts)
    raise ChatFormatError(f"{where} must be a string or None, got {type(value).__name__}")


def _arguments(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise ChatFormatError(
                f"{where} is a string that is not valid JSON ({e.msg} at position {e.pos}): {value[:80]!r}",
                hint="pass arguments as a mapping, or as a JSON object string",
            ) from None
        if not isinstance(parsed, dict):
            raise ChatFormatError(f"{where} must be a JSON object, got {type(parsed).__name__}: {value[:80]!r}")
        return parsed
    raise ChatFormatError(f"{where} must be a mapping, got {type(value).__name__}")


def _call(raw: Any, where: str) -> NormalizedCall:
    if hasattr(raw, "to_openai"):
        raw = raw.to_openai()
    if not isinstance(raw, Mapping):
        raise ChatFormatError(f"{where} must be a mapping, got {type(raw).__name__}")
    fn = raw.get("function") or raw
    if not isinstance(fn, Mapping):
        raise ChatFormatError(f"{where}.function must be a mapping, got {type(fn).__name__}")
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ChatFormatError(f"{where} has no function name", hint='expected {"function": {"name": ..., ...}}')
    args = fn.get("arguments")
    text = args if isinstance(args, str) and args.strip() else None
    return NormalizedCall(name=name, arguments=_arguments(args, f"{where}.arguments"), text=text)


def normalize_messages(messages: Sequence[Any]) -> list[NormalizedMessage]:
    """Turn OpenAI-shaped dicts and ``ChatMessage`` objects into :class:`NormalizedMessage` (see ``render``)."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise ChatFormatError(f"messages must be a list of messages, got {type(messages).__name__}")
    if not messages:
        raise ChatFormatError("messages is empty", hint="pass at least one message")
    out: list[NormalizedMessage] = []
    for i, raw in enumerate(messages):
        where = f"messages[{i}]"
        if hasattr(raw, "to_openai"):
            raw = raw.to_openai()
        if not isinstance(raw, Mapping):
            raise ChatFormatError(f"{where} must be a mapping or ChatMessage, got {type(raw).__name__}")
        role = raw.get("role")
        if role not in _ROLES:
            raise ChatFormatError(f"{where}.role is {role!r}", hint=f"expected one of {', '.join(_ROLES)}")
        reasoning = raw.get("reasoning_content")
        if reasoning is None:  # the other names apply_chat_template reads it from
            reasoning = raw.get("reasoning", raw.get("thinking"))
        if reasoning is not None and not isinstance(reasoning, str):
            raise ChatFormatError(f"{where}.reasoning_content must be a string or None")
        calls = raw.get("tool_calls") or []
        if not isinstance(calls, Sequence) or isinstance(calls, (str, bytes)):
            raise ChatFormatError(f"{where}.tool_calls must be a list")
        if calls and role != "assistant":
            raise ChatFormatError(f"{where} has tool_calls but role {role!r}", hint="only assistant turns call tools")
        out.append(
            NormalizedMessage(
                role=role,
                content=_content(raw.get("content"), f"{where}.content"),
                reasoning_content=reasoning,
                tool_calls=[_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)],
            )
        )
    return out


def normalize_tools(tools: Sequence[Any] | None) -> list[Mapping[str, Any]]:
    """Check the tool schemas (a list of mappings, usually ``{"type": "function", "function": {...}}``)."""
    if not tools:
        return []
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ChatFormatError(f"tools must be a list of tool schemas, got {type(tools).__name__}")
    for i, t in enumerate(tools):
        if not isinstance(t, Mapping):
            raise ChatFormatError(
                f"tools[{i}] must be a mapping, got {type(t).__name__}",
                hint='expected {"type": "function", "function": {"name": ..., "parameters": {...}}}',
            )
    return list(tools)


# --------------------------------------------------------------------------------------------- families


def _hermes_call(call: NormalizedCall, where: str, *, as_given: bool = False) -> str:
    args = call.text if as_given and call.text is not None else _tojson(call.arguments, where)
    return '<tool_call>\n{"name": "' + call.name + '", "arguments": ' + args + "}\n</tool_call>"


def _tool_turns(msgs: list[NormalizedMessage], i: int, out: list[str]) -> None:
    """Hermes tool results: consecutive tool messages merge into one user turn."""
    m = msgs[i]
    if i == 0 or msgs[i - 1].role != "tool":
        out.append("<|im_start|>user")
    out.append("\n<tool_response>\n" + m.content + "\n</tool_response>")
    if i == len(msgs) - 1 or msgs[i + 1].role != "tool":
        out.append("<|im_end|>\n")


def _render_qwen25(msgs: list[NormalizedMessage], tools: list[Mapping[str, Any]], gen: bool) -> str:
    out: list[str] = []
    system = msgs[0].content if msgs[0].role == "system" else QWEN25_DEFAULT_SYSTEM
    out.append("<|im_start|>system\n" + system)
    if tools:
        out.append("\n\n" + _HERMES_TOOLS_INTRO)
        out.extend("\n" + _tojson(t, f"tools[{i}]") for i, t in enumerate(tools))
        out.append(_HERMES_TOOLS_OUTRO)
    out.append("<|im_end|>\n")
    for i, m in enumerate(msgs):
        if m.role == "tool":
            _tool_turns(msgs, i, out)
        elif m.role == "assistant" and m.tool_calls:
            out.append("<|im_start|>assistant" + ("\n" + m.content if m.content else ""))
            for j, c in enumerate(m.tool_calls):
                out.append("\n" + _hermes_call(c, f"messages[{i}].tool_calls[{j}].arguments"))
            out.append("<|im_end|>\n")
        elif not (i == 0 and m.role == "system"):
            out.append("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n")
    if gen:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _split_reasoning(m: NormalizedMessage) -> tuple[str, str]:
    """(reasoning, content) of a Qwen3 assistant turn: from ``reasoning_content`` or split at ``</think>``."""
    if m.reasoning_content is not None:
        return m.reasoning_content, m.content
    if "</think>" in m.content:
        head, _, _ = m.content.partition("</think>")
        reasoning = head.rstrip("\n").split("<think>")[-1].lstrip("\n")
        return reasoning, m.content.split("</think>")[-1].lstrip("\n")
    return "", m.content


def _last_query_index(msgs: list[NormalizedMessage]) -> int:
    for i in range(len(msgs) - 1, -1, -1):
        c = msgs[i].content
        if msgs[i].role == "user" and not (c.startswith("<tool_response>") and c.endswith("</tool_response>")):
            return i
    return len(msgs) - 1


def _render_qwen3(
    msgs: list[NormalizedMessage], tools: list[Mapping[str, Any]], gen: bool, enable_thinking: bool | None
) -> str:
    out: list[str] = []
    has_system = msgs[0].role == "system"
    if tools:
        out.append("<|im_start|>system\n" + (msgs[0].content + "\n\n" if has_system else "") + _HERMES_TOOLS_INTRO)
        out.extend("\n" + _tojson(t, f"tools[{i}]") for i, t in enumerate(tools))
        out.append(_HERMES_TOOLS_OUTRO + "<|im_end|>\n")
    elif has_system:
        out.append("<|im_start|>system\n" + msgs[0].content + "<|im_end|>\n")
    last_query = _last_query_index(msgs)
    for i, m in enumerate(msgs):
        if m.role == "tool":
            _tool_turns(msgs, i, out)
        elif m.role == "assistant":
            reasoning, content = _split_reasoning(m)
            out.append("<|im_start|>assistant\n")
            if i > last_query and (i == len(msgs) - 1 or reasoning):
                out.append("<think>\n" + reasoning.strip("\n") + "\n</think>\n\n" + content.lstrip("\n"))
            else:
                out.append(content)
            for j, c in enumerate(m.tool_calls):
                if j > 0 or content:
                    out.append("\n")
                out.append(_hermes_call(c, f"messages[{i}].tool_calls[{j}].arguments", as_given=True))
            out.append("<|im_end|>\n")
        elif not (i == 0 and m.role == "system"):
            out.append("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n")
    if gen:
        out.append("<|im_start|>assistant\n")
        if enable_thinking is False:
            out.append("<think>\n\n</think>\n\n")
    return "".join(out)


def _jinja_str(value: Any) -> str:
    """Jinja's ``string`` filter / ``~`` operator on a plain Python value: ``str()``."""
    return str(value)


def _item_list(value: Any, tag: str) -> str:
    """A ``required``-style list rendered as ``\\n<tag>[`a`, `b`]</tag>`` (empty/non-sequences render nothing)."""
    if value is None or not hasattr(value, "__len__") or not hasattr(value, "__getitem__"):
        return ""
    try:
        items = list(iter(value))
    except TypeError:
        return ""
    if not items:
        return ""
    parts = ["`" + x + "`" if isinstance(x, str) else _jinja_str(x) for x in items]
    return "\n<" + tag + ">[" + ", ".join(parts) + "]</" + tag + ">"


def _coder_tool(tool: Mapping[str, Any], where: str) -> str:
    fn = tool["function"] if "function" in tool else tool
    if not isinstance(fn, Mapping):
        raise ChatFormatError(f"{where}.function must be a mapping, got {type(fn).__name__}")
    desc = fn["description"] if "description" in fn else None
    out = ["\n<function>\n<name>" + _jinja_str(fn.get("name", "")) + "</name>"]
    out.append("\n<description>" + ("" if "description" not in fn else _jinja_str(desc).strip()) + "</description>")
    out.append("\n<parameters>")
    params = fn.get("parameters")
    params = params if isinstance(params, Mapping) else {}
    props = params.get("properties")
    for pname, pfields in props.items() if isinstance(props, Mapping) else ():
        out.append("\n<parameter>\n<name>" + _jinja_str(pname) + "</name>")
        if isinstance(pfields, Mapping):
            if "type" in pfields:
                out.append("\n<type>" + _jinja_str(pfields["type"]) + "</type>")
            if "description" in pfields:
                out.append("\n<description>" + _jinja_str(pfields["description"]).strip() + "</description>")
            for key, value in pfields.items():
                if not key or not isinstance(key, str) or key in _CODER_HANDLED_KEYS:
                    continue
                tag = key.replace("-", "_").replace(" ", "_").replace("$", "")
                if isinstance(value, Mapping):
                    out.append("\n<" + tag + ">" + _tojson(value, f"{where} parameter {pname!r}") + "</" + tag + ">")
                elif value is not None:
                    out.append("\n<" + tag + ">" + _jinja_str(value) + "</" + tag + ">")
            out.append(_item_list(pfields.get("required"), "required"))
        out.append("\n</parameter>")
    out.append(_item_list(params.get("required"), "required"))
    out.append("\n</parameters>")
    if "return" in fn:
        ret = fn["return"]
        out.append("\n<return>" + (_tojson(ret, where) if isinstance(ret, Mapping) else _jinja_str(ret)) + "</return>")
    out.append("\n</function>")
    return "".join(out)


def _render_coder(msgs: list[NormalizedMessage], tools: list[Mapping[str, Any]], gen: bool) -> str:
    out: list[str] = []
    system = msgs[0].content if msgs[0].role == "system" else None
    body = msgs[1:] if system is not None else msgs
    if system is not None:
        out.append("<|im_start|>system\n" + system)
    elif tools:
        out.append("<|im_start|>system\n" + CODER_DEFAULT_SYSTEM)
    if tools:
        out.append(_CODER_TOOLS_INTRO)
        out.extend(_coder_tool(t, f"tools[{i}]") for i, t in enumerate(tools))
        out.append(_CODER_TOOLS_OUTRO)
    if system is not None or tools:
        out.append("<|im_end|>\n")
    for i, m in enumerate(body):
        if m.role == "assistant" and m.tool_calls:
            out.append("<|im_start|>assistant")
            if m.content.strip():
                out.append("\n" + m.content.strip() + "\n")
            for c in m.tool_calls:
                out.append("\n<tool_call>\n<function=" + c.name + ">\n")
                for name, value in c.arguments.items():
                    text = value if isinstance(value, str) else _jinja_str(value)
                    out.append("<parameter=" + name + ">\n" + text + "\n</parameter>\n")
                out.append("</function>\n</tool_call>")
            out.append("<|im_end|>\n")
        elif m.role == "tool":
            if i > 0 and body[i - 1].role != "tool":
                out.append("<|im_start|>user\n")
            out.append("<tool_response>\n" + m.content + "\n</tool_response>\n")
            if i == len(body) - 1 or body[i + 1].role != "tool":
                out.append("<|im_end|>\n")
        else:
            out.append("<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n")
    if gen:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def render(
    messages: Sequence[Any],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    family: Family,
    add_generation_prompt: bool = True,
    enable_thinking: bool | None = None,
) -> str:
    """Render a chat into the exact prompt text the official Qwen chat template of ``family`` produces.

    ``family``: ``"qwen2.5"`` (Qwen2.5-Instruct), ``"qwen3"`` or ``"qwen3-coder"``. The result equals
    ``tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, ...)`` with that family's
    official template, for every input the official template renders correctly:

    * qwen2.5: default system prompt "You are Qwen, created by Alibaba Cloud. ..." when none is given;
      tools as JSON lines in a ``# Tools`` section; calls as ``<tool_call>`` JSON; consecutive ``tool``
      messages merged into one user turn of ``<tool_response>`` blocks.
    * qwen3: as qwen2.5 but no default system prompt; reasoning (``reasoning_content``, or text before
      ``</think>`` in ``content``) is shown as ``<think>`` only for assistant turns after the last real user
      query; ``enable_thinking=False`` appends an empty ``<think>\\n\\n</think>\\n\\n`` to the generation
      prompt (``None``/``True``: nothing).
    * qwen3-coder: XML tool descriptions and ``<function=..><parameter=..>`` calls; non-string argument
      values are written as Python's ``str()`` of the value (what the template's ``string`` filter does);
      ``enable_thinking`` and ``reasoning_content`` are ignored.

    ``messages``: OpenAI-shaped dicts (``role``, ``content``, ``tool_calls``, ``tool_call_id``, ``name``,
    ``reasoning_content``) or :class:`tq_agents.models.base.ChatMessage` objects. Where the official
    templates would crash or double-encode, the input is normalised first:

    * ``content=None`` (or missing) renders as ``""`` (the Qwen2.5/Qwen3 templates crash on ``None``);
      a list of OpenAI text parts is joined into one string;
    * tool-call ``arguments`` given as a JSON string must hold a JSON object (else ``ChatFormatError``):
      Qwen3 inserts the string as given, as its template does; for Qwen2.5 (whose template would
      double-encode it) and Qwen3-Coder (whose template crashes) it is parsed into a mapping; ``None``/``""``
      mean ``{}``;
    * reasoning may also be given as ``reasoning`` or ``thinking`` (as ``apply_chat_template`` reads it);
    * tool-call dicts may be OpenAI-shaped (``{"function": {"name", "arguments"}}``) or flat
      (``{"name", "arguments"}``) or ``ToolCall`` objects;
    * qwen3-coder tools without ``parameters`` render with an empty parameter list (the template crashes).

    ``tools``: OpenAI tool schemas ``{"type": "function", "function": {...}}``, rendered as given.

    Raises ``ChatFormatError`` (naming the message and field) for an empty message list, an unknown role,
    non-text content, tool calls on a non-assistant message, unparseable arguments, or an unknown family.
    """
    if family not in _FAMILIES:
        raise ChatFormatError(
            f"unknown Qwen family {family!r}", hint="family must be 'qwen2.5', 'qwen3' or 'qwen3-coder'"
        )
    msgs = normalize_messages(messages)
    tool_list = normalize_tools(tools)
    if family == "qwen2.5":
        return _render_qwen25(msgs, tool_list, add_generation_prompt)
    if family == "qwen3":
        return _render_qwen3(msgs, tool_list, add_generation_prompt, enable_thinking)
    return _render_coder(msgs, tool_list, add_generation_prompt)
