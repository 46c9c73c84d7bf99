"""Find tool-call attempts in a Qwen completion: Hermes JSON blocks, Qwen3-Coder XML, and their faults.

Every reader here is linear in the text (regex searches and bounded slices; no rescans from the start),
so a degenerate completion costs little. Nothing here knows the tools: ``_parse`` checks the attempts.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tq_agents.models.qwen._json_repair import LenientJSONError, decode_lenient, loads_lenient
from tq_agents.models.qwen._schema import describe

__all__ = [
    "END_TOKENS",
    "FENCE_RE",
    "HERMES_SHAPE",
    "TC_CLOSE",
    "TC_OPEN",
    "TH_CLOSE",
    "TH_OPEN",
    "XML_SHAPE",
    "Attempt",
    "bare_json_calls",
    "clip",
    "extract",
    "split_reasoning",
]

TC_OPEN, TC_CLOSE = "<tool_call>", "</tool_call>"
TH_OPEN, TH_CLOSE = "<think>", "</think>"
_FN_CLOSE, _P_CLOSE = "</function>", "</parameter>"
_OPENER_RE = re.compile(r"<tool_call>|<function=")
_FN_RE = re.compile(r"<function=([^>\n]{0,200})>")
_PARAM_RE = re.compile(r"<parameter=([^>\n]{0,200})>")
_TAG_RE = re.compile(r"</?tool_call>")
FENCE_RE = re.compile(r"```[\w+-]*")
_PY_CALL_RE = re.compile(r"([A-Za-z_][\w.\-]{0,100})\((.*)\)", re.DOTALL)
_PARAM_END_RE = re.compile(r"</parameter>|<parameter=|</function>|<function=")
END_TOKENS = ("<|im_end|>", "<|endoftext|>")
_WS = " \t\r\n"
_SEPARATORS = " \t\r\n,;}]`"
_RAW_LIMIT = 4000

HERMES_SHAPE = '<tool_call>\n{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n</tool_call>'
XML_SHAPE = "<tool_call>\n<function=NAME>\n<parameter=NAME>\nvalue\n</parameter>\n</function>\n</tool_call>"


@dataclass(slots=True)
class Attempt:
    """One call as found in the text, before tools are checked."""

    raw: str
    name: str | None = None
    arguments: Any = None  # JSON format: the decoded value; XML: dict of parameter texts
    xml: bool = False
    problem: str | None = None  # set when the call could not be read at all
    in_think: bool = False
    after_response: bool = False  # written after a <tool_response> the model made up itself


def _skip_ws(text: str, p: int) -> int:
    n = len(text)
    while p < n and text[p] in _WS:
        p += 1
    return p


def _next_tag(text: str, p: int) -> int:
    """Index of the next ``</tool_call>`` or ``<tool_call>`` at/after p, or len(text)."""
    m = _TAG_RE.search(text, p)
    return len(text) if m is None else m.start()


def clip(raw: str) -> str:
    """The raw text of a call for an error report: stripped, at most 4,000 characters."""
    raw = raw.strip()
    return raw if len(raw) <= _RAW_LIMIT else raw[:_RAW_LIMIT] + "..."


def _json_attempt(value: Any, raw: str) -> Attempt:
    """Turn one decoded JSON value into an attempt (name + arguments), or say what is wrong with it."""
    if not isinstance(value, dict):
        return Attempt(
            raw, problem=f'the call must be a JSON object with "name" and "arguments", got {describe(value)}'
        )
    obj = value
    if isinstance(obj.get("function"), dict):  # OpenAI shape: {"type": "function", "function": {...}}
        obj = obj["function"]
    name = obj.get("name")
    if name is None and isinstance(obj.get("function"), str):  # {"function": "f", "arguments": {...}}
        name = obj["function"]
    if not isinstance(name, str) or not name.strip():
        return Attempt(raw, problem='the call has no "name" (a string naming the tool)')
    name = name.strip()
    for key in ("arguments", "parameters", "args"):
        if key in obj:
            args = obj[key]
            break
    else:  # flat form {"name": "f", "city": "Paris"}: the other keys are the arguments
        args = {k: v for k, v in obj.items() if k not in ("name", "type", "id", "function")}
    if isinstance(args, str):
        s = args.strip()
        if not s:
            args = {}
        else:
            try:
                args, _ = loads_lenient(s)
            except LenientJSONError as e:
                return Attempt(
                    raw, name=name, problem=f'"arguments" is a string that is not a JSON object ({e.reason})'
                )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return Attempt(raw, name=name, problem=f'"arguments" must be a JSON object, got {describe(args)}')
    return Attempt(raw, name=name, arguments=args)


def _read_json_values(seg: str, autoclose: bool) -> tuple[list[Attempt], int, LenientJSONError | None]:
    """Read successive JSON values from ``seg`` (one block's text); returns attempts, end, and the error
    that stopped it (``reason == "junk"`` when the next thing is not JSON at all)."""
    out: list[Attempt] = []
    p, stop = 0, len(seg)
    while True:
        while p < stop and seg[p] in _SEPARATORS:
            p += 1
        if p >= stop or seg.startswith(TC_CLOSE, p) or seg.startswith(TC_OPEN, p):
            return out, p, None
        if not out and seg.startswith("json", p) and seg[p - 1 : p] == "`":
            p += 4  # ```json fence
            continue
        if seg[p] not in "{[":
            return out, p, LenientJSONError("junk", p)
        try:
            value, end, _ = decode_lenient(seg, p, autoclose=autoclose)
        except LenientJSONError as e:
            return out, p, e
        raw = seg[p:end]
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.extend(_json_attempt(v, raw) for v in value)
        else:
            out.append(_json_attempt(value, raw))
        p = end


def _pythonic_call(body: str) -> Attempt | None:
    """``name(key=value, ...)`` with literal values, as some small models write a call; None if not that."""
    m = _PY_CALL_RE.fullmatch(body.strip().removeprefix("```python").removesuffix("```").strip())
    if m is None or len(body) > 20_000:
        return None
    raw = clip(body)
    try:
        node = ast.parse(m.group(0), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call):
        return None
    name = m.group(1)
    if node.args:
        return Attempt(
            raw, name=name, problem="arguments must be given by name, as JSON: name(key=value) is not a call"
        )
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            args[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return Attempt(raw, name=name, problem=f"the value of {kw.arg!r} is not a literal")
    try:
        return Attempt(raw, name=name, arguments=_as_json(args))
    except ValueError as e:
        return Attempt(raw, name=name, problem=f"the arguments are not JSON values ({e})")


def _as_json(value: Any, depth: int = 0) -> Any:
    """A Python literal as a JSON value (tuples become lists); ValueError for sets, bytes, complex, NaN..."""
    if depth > 64:
        raise ValueError("nested too deeply")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), float("-inf")):
        return value
    if isinstance(value, list | tuple):
        return [_as_json(v, depth + 1) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _as_json(v, depth + 1) for k, v in value.items()}
    raise ValueError(f"{type(value).__name__} {value!r:.30}")


def _read_past_opener(text: str, p: int, nxt: int, found: list[Attempt]) -> int | None:
    """Read one value from p straight past the ``<tool_call>`` at nxt (it was inside a string).

    Taken only when the value ends after nxt and is followed by a tag or the end; returns where scanning
    resumes, or None.
    """
    q = _skip_ws(text, p)
    if text[q : q + 1] not in ("{", "["):
        return None
    try:
        value, end, _ = decode_lenient(text, q, strict_first=False)
    except LenientJSONError:
        return None
    after = _skip_ws(text, end)
    if end <= nxt or not (after == len(text) or text.startswith(TC_CLOSE, after) or text.startswith(TC_OPEN, after)):
        return None
    raw = text[q:end]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        found.extend(_json_attempt(v, raw) for v in value)
    else:
        found.append(_json_attempt(value, raw))
    return after + len(TC_CLOSE) if text.startswith(TC_CLOSE, after) else after


def _read_json_block(text: str, p: int, found: list[Attempt]) -> int:
    """Read the JSON body of a ``<tool_call>`` starting at p; returns where scanning resumes.

    The block's region runs to the next ``<tool_call>`` (or the end), which keeps the scan linear.
    """
    nxt = text.find(TC_OPEN, p)
    region_end = len(text) if nxt < 0 else nxt
    seg = text[p:region_end]
    # First pass: the whole region, so a "</tool_call>" inside a string is harmless.
    attempts, end, err = _read_json_values(seg, autoclose=False)
    if err is None:
        found.extend(attempts)
        end += p
        return end + len(TC_CLOSE) if text.startswith(TC_CLOSE, end) else end
    if nxt >= 0 and err.truncated and err.reason.startswith("a string was never closed"):
        resume = _read_past_opener(text, p, nxt, found)  # a "<tool_call>" inside a string cut the region
        if resume is not None:
            return resume
    # Second pass: the block ends at a </tool_call>, and a missing '}' or ']' before it is repaired. The
    # first </tool_call> may sit inside a string, so a few later ones are tried too.
    first: tuple[list[Attempt], int, LenientJSONError | None, int] | None = None
    for tries, m in enumerate(_TAG_RE.finditer(seg)):
        block_end = m.start()
        attempts, end, err = _read_json_values(seg[:block_end], autoclose=True)
        if first is None:
            first = (attempts, end, err, block_end)
        if err is None or (attempts and err.reason == "junk") or tries >= 8:
            break
        if not (err.truncated and seg.find(TC_CLOSE, m.end()) >= 0):
            break
    else:  # no </tool_call>: the block ends at the next <tool_call> (repairable) or at the end (cut off)
        block_end = len(seg)
        attempts, end, err = _read_json_values(seg, autoclose=nxt >= 0)
    if err is not None and first is not None and (not attempts or err.reason != "junk"):
        attempts, end, err, block_end = first  # no later end did better: report the first reading
    found.extend(attempts)
    closed = p + block_end < len(text)
    ends_with_close = seg.startswith(TC_CLOSE, block_end)
    if err is not None and attempts and err.reason == "junk" and not ends_with_close:
        return p + end  # </tool_call> missing: what follows the call is ordinary text
    if err is not None and (not attempts or err.reason != "junk"):
        raw = seg[end:block_end]
        pythonic = _pythonic_call(raw) if err.reason == "junk" and not attempts else None
        if pythonic is not None:
            found.append(pythonic)
        else:
            if err.reason == "junk":
                reason = f"expected a JSON object after <tool_call>, got {clip(raw)[:40]!r}"
            elif err.truncated and not closed:
                reason = f"the output ended before the call was complete ({err.reason}); it was probably cut off"
            else:
                reason = f"the call is not valid JSON: {err.reason}"
            found.append(Attempt(clip(raw), problem=reason))
    return p + block_end + (len(TC_CLOSE) if ends_with_close else 0)


def _param_end(text: str, p: int) -> tuple[int, int]:
    """End of a parameter value starting at p: (value_end, resume). (-1, len) if the text ends inside it.

    The value ends at ``</parameter>`` unless another parameter or the function ends first (then
    ``</parameter>`` was left out); a ``<tool_call>``/``</tool_call>`` inside a closed value is text.
    """
    m = _PARAM_END_RE.search(text, p)
    if m is None:
        t = _TAG_RE.search(text, p)
        return (-1, len(text)) if t is None else (t.start(), t.start())
    if m.group() == _P_CLOSE:
        return m.start(), m.end()
    # unclosed </parameter>: the value ends at the next tag; a </tool_call> before it ends the value only
    # when a new call follows (otherwise it is text inside the value)
    t = _TAG_RE.search(text, p, m.start())
    if t is not None and (
        t.group() == TC_OPEN or m.group() == "<function=" or text.find(TC_OPEN, t.end(), m.start()) >= 0
    ):
        return t.start(), t.start()
    return m.start(), m.start()


def _read_xml(text: str, p: int, found: list[Attempt], wrapped: bool) -> int:
    """Read ``<function=NAME>...</function>`` calls starting at p; returns where scanning resumes."""
    n = len(text)
    while True:
        m = _FN_RE.match(text, p)
        if m is None:
            end = _next_tag(text, p)
            found.append(Attempt(clip(text[p:end]), problem="expected <function=NAME> after <tool_call>"))
            return end + len(TC_CLOSE) if text.startswith(TC_CLOSE, end) else end
        start = p
        name = m.group(1).strip().strip("\"'").strip()
        q = m.end()
        params: dict[str, str] = {}
        json_args: Any = None
        problem: str | None = None
        while True:
            q = _skip_ws(text, q)
            if text.startswith("{", q) and not params and json_args is None:  # <function=f>{"a": 1}</function>
                try:
                    json_args, q, _ = decode_lenient(text, q, strict_first=False)
                except LenientJSONError as e:
                    problem = f"the arguments after <function={name}> are not a JSON object ({e.reason})"
                    q = _next_tag(text, q)
                    break
            elif text.startswith("<parameter=", q):
                pm = _PARAM_RE.match(text, q)
                if pm is None:
                    problem = "a <parameter=NAME> tag is not closed with '>'"
                    q = _next_tag(text, q)
                    break
                pname = pm.group(1).strip().strip("\"'").strip()
                vend, q = _param_end(text, pm.end())
                if vend < 0:
                    problem = f"the output ended inside the parameter {pname!r}; it was probably cut off"
                    break
                value = text[pm.end() : vend]
                if value.startswith("\n"):
                    value = value[1:]
                if value.endswith("\n"):
                    value = value[:-1]
                if pname in params and problem is None:
                    problem = f"the parameter {pname!r} is given twice"
                params[pname] = value
            elif text.startswith(_FN_CLOSE, q):
                q += len(_FN_CLOSE)
                break
            elif q >= n:
                problem = problem or "the output ended before </function>; it was probably cut off"
                break
            elif text.startswith(TC_CLOSE, q) or text.startswith("<function=", q) or text.startswith(TC_OPEN, q):
                break  # missing </function>
            else:  # stray text between parameters: skip to the next tag
                nxt = text.find("<", q + 1)
                q = n if nxt < 0 else nxt
        raw = text[start:q]
        if not name:
            found.append(Attempt(clip(raw), problem="<function=...> has no tool name"))
        elif problem:
            found.append(Attempt(clip(raw), name=name, problem=problem))
        elif json_args is not None:
            if params:
                found.append(
                    Attempt(clip(raw), name=name, problem="give the arguments either as JSON or as parameters")
                )
            elif not isinstance(json_args, dict):
                found.append(Attempt(clip(raw), name=name, problem="the arguments must be a JSON object"))
            else:
                found.append(Attempt(clip(raw), name=name, arguments=json_args))
        else:
            found.append(Attempt(clip(raw), name=name, arguments=params, xml=True))
        q = _skip_ws(text, q)
        if text.startswith("<function=", q):
            p = q
            continue
        if wrapped and text.startswith(TC_CLOSE, q):
            return q + len(TC_CLOSE)
        return q


def extract(text: str) -> tuple[list[Attempt], list[str]]:
    """All call attempts in text, in order, and the text pieces outside them."""
    found: list[Attempt] = []
    pieces: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _OPENER_RE.search(text, pos)
        if m is None:
            pieces.append(text[pos:])
            break
        pieces.append(text[pos : m.start()])
        if m.group() == "<function=":
            pos = _read_xml(text, m.start(), found, wrapped=False)
            continue
        p = _skip_ws(text, m.end())
        if text.startswith(TC_OPEN, p):  # doubled opener: the next round reads it
            pos = p
        elif text.startswith(TC_CLOSE, p):
            found.append(Attempt("<tool_call></tool_call>", problem="the <tool_call> block is empty"))
            pos = p + len(TC_CLOSE)
        elif p >= n:
            found.append(Attempt(TC_OPEN, problem="the output ended right after <tool_call>; it was probably cut off"))
            pos = n
        elif text.startswith("<function=", p):
            pos = _read_xml(text, p, found, wrapped=True)
        else:
            pos = _read_json_block(text, p, found)
    return found, pieces


def inside_call(text: str, p: int, start: int = 0) -> bool:
    """Whether position ``p`` lies inside a tool call opened in ``text[start:p]``: a ``<tool_call>`` before it is
    still open, and either a ``</tool_call>`` closes that call after ``p`` (before another call opens), or ``p``
    sits inside a JSON string of it (an odd number of unescaped quotes since the opener). A tag written there
    is text of an argument (a string value, an XML parameter value), not markup."""
    opened = text.rfind(TC_OPEN, start, p)
    if opened < 0 or text.rfind(TC_CLOSE, start, p) > opened:
        return False
    closes = text.find(TC_CLOSE, p)
    reopens = text.find(TC_OPEN, p)
    if closes >= 0 and (reopens < 0 or closes < reopens):
        return True
    body = text[opened:p].replace("\\\\", "").replace('\\"', "")
    return body.count('"') % 2 == 1


def find_tag(text: str, tag: str, start: int) -> int:
    """The first ``tag`` at or after ``start`` that is not inside a tool call's arguments (``inside_call``)."""
    i = text.find(tag, start)
    while i >= 0 and inside_call(text, i, start):
        i = text.find(tag, i + len(tag))
    return i


def split_reasoning(text: str) -> list[tuple[bool, str]]:
    """Split into (is_reasoning, text) segments.

    ``</think>`` with no ``<think>`` before it means the prompt opened the reasoning: everything before it
    is reasoning. A ``<think>`` never closed ends at the first tool call (small models forget ``</think>``
    before calling), or else at the end of the text. A tag inside a tool call's arguments is argument text.
    """
    out: list[tuple[bool, str]] = []
    pos = 0
    first_open = find_tag(text, TH_OPEN, 0)
    first_close = find_tag(text, TH_CLOSE, 0)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        out.append((True, text[:first_close]))
        pos = first_close + len(TH_CLOSE)
    while True:
        i = find_tag(text, TH_OPEN, pos)
        if i < 0:
            out.append((False, text[pos:]))
            return out
        out.append((False, text[pos:i]))
        body = i + len(TH_OPEN)
        j = text.find(TH_CLOSE, body)
        if j < 0:
            m = _OPENER_RE.search(text, body)
            if m is None:
                out.append((True, text[body:]))
            else:
                out.append((True, text[body : m.start()]))
                out.append((False, text[m.start() :]))
            return out
        out.append((True, text[body:j]))
        pos = j + len(TH_CLOSE)


def bare_json_calls(content: str, names: Collection[str]) -> list[Attempt] | None:
    """Qwen2.5(-Coder) sometimes answers with a bare (or ```json-fenced) call object and no tags.

    Taken as calls only when the whole content is that JSON and every object names a known tool.
    """
    s = content.strip()
    if s.startswith("```"):
        first_nl = s.find("\n")
        if first_nl < 0 or not s.endswith("```"):
            return None
        s = s[first_nl + 1 : -3].strip()
    if not s or s[0] not in "{[":
        return None
    try:
        value, _ = loads_lenient(s)
    except LenientJSONError:
        return None
    values = value if isinstance(value, list) else [value]
    if not values:
        return None
    for v in values:
        name = v.get("name") if isinstance(v, dict) else None
        if not (isinstance(name, str) and name in names and ("arguments" in v or "parameters" in v)):
            return None
    return [_json_attempt(v, s) for v in values]
