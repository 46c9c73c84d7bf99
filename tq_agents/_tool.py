"""``@tool``: a typed Python function → a ``Tool`` with a pydantic argument model and an OpenAI schema.

```python
from typing import Annotated
from pydantic import Field
from tq_agents import tool

@tool
def lookup_order(order_id: str, include_items: bool = False) -> dict:
    \"\"\"Look up an order by id.

    Args:
        order_id: The order id, e.g. "A1001".
        include_items: Also return the order lines.
    \"\"\"
    ...

@tool(name="add", timeout=2.0)
async def add_numbers(a: Annotated[int, Field(description="first")], b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b
```

``await lookup_order.call({"order_id": "A1001"})`` validates the arguments first and returns a
``ToolResult`` or a ``ToolError`` *value* (never raises for bad arguments, exceptions inside the
function, timeouts, or a result that cannot be converted to text). ``ToolError.content`` names each bad field
and what was expected, in words fit to show the model. The decorated object stays callable like the original
function.

What the function returns becomes JSON: pydantic models, dataclasses, dates, tuples, sets and bytes inside any
container are converted (``ToolResult.value``), and ``ToolResult.content`` (the text the model is shown) is that
value as valid JSON text, or the string itself when the function returns a ``str``. The text is cut to
``max_output_chars`` (default ``DEFAULT_MAX_OUTPUT_CHARS``) with a note saying how much was left out.

Sync functions run on a thread pool of the tools' own (threads named ``tq-tool-...``), not on asyncio's default
executor; a sync function cannot be stopped once started (see ``timeout`` in ``tool``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import json
import math
import numbers
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined, to_jsonable_python

from tq_agents.errors import ToolDefinitionError, UserError

__all__ = ["DEFAULT_MAX_OUTPUT_CHARS", "Tool", "ToolError", "ToolResult", "format_validation_error", "tool"]

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")

#: Default ``max_output_chars`` of a tool: about 7,500 tokens, the output limit common coding agents use for
#: one command's output. Enough for a page of text or a few hundred records; a bigger result is cut with a note.
DEFAULT_MAX_OUTPUT_CHARS = 30_000

#: How many bad fields the invalid-arguments text lists before "…and N more".
MAX_LISTED_PROBLEMS = 20

#: Worker threads of the tools' own executor (see ``_tool_executor``).
TOOL_THREADS = 32


class ToolResult(BaseModel):
    """A tool call that ran to completion."""

    ok: Literal[True] = True
    tool: str = Field(description="Name of the tool.")
    value: Any = Field(
        default=None,
        description="What the function returned, converted to JSON types (see ``tool``); None when the content "
        "was truncated (the full value is not kept).",
    )
    content: str = Field(description="The value as text, as it is shown to the model in the tool message.")
    duration_s: float = Field(default=0.0, description="Wall-clock seconds the call took.")
    truncated: bool = Field(default=False, description="The content was cut to the tool's max_output_chars.")
    original_chars: int | None = Field(
        default=None, description="When truncated: the length of the full text, in characters."
    )


ToolErrorKind = Literal["invalid_arguments", "exception", "timeout", "unknown_tool", "malformed_call", "bad_result"]


class ToolError(BaseModel):
    """A tool call that did not produce a result. ``content`` is the text the model is shown."""

    ok: Literal[False] = False
    tool: str = Field(description="Name of the tool (as the model wrote it).")
    kind: ToolErrorKind = Field(
        description="What went wrong; ``bad_result``: the function ran, but what it returned cannot be converted "
        "to text (or is a generator)."
    )
    content: str = Field(description="What went wrong and what to do next, in words fit to show the model.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="For invalid_arguments: bad field path → what was expected."
    )
    duration_s: float = 0.0


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(arguments)"


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _got(value: Any) -> str:
    """``value`` for an error message: its repr, and its type unless it is ``None``."""
    return "None" if value is None else f"{value!r} ({type(value).__name__})"


# ---- error locations: pydantic's union member tags are not fields -------------------------------------
# pydantic puts the member's label into ``loc`` for each member of a union that failed (``('x', 'int')``,
# ``('x', 'list[int]', 0)``, ``('pet', 'cat', 'lives')``). Walking the model's core schema along the ``loc``
# tells those tags apart from field names, dict keys and list indices.

_WRAPPERS = frozenset(
    {"default", "nullable", "function-after", "function-before", "function-wrap", "model", "dataclass"}
)
_LEAVES = frozenset(
    {
        "int",
        "float",
        "str",
        "bool",
        "none",
        "bytes",
        "literal",
        "enum",
        "date",
        "time",
        "datetime",
        "timedelta",
        "decimal",
        "uuid",
        "url",
        "multi-host-url",
        "complex",
        "is-instance",
        "is-subclass",
        "callable",
    }
)


def _schema_name(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    """A union member's likely pydantic label (model class name or scalar type), to try that member first."""
    if schema.get("type") == "definition-ref":
        schema = defs.get(schema.get("schema_ref", ""), {})
    if schema.get("type") in ("model", "dataclass"):
        return getattr(schema.get("cls"), "__name__", None)
    t = schema.get("type")
    return t if isinstance(t, str) else None


def _walk(
    schema: Mapping[str, Any], loc: tuple[Any, ...], pos: int, defs: dict[str, Any], tags: list[tuple[int, str]]
) -> list[Any] | None:
    """The path segments of ``loc[pos:]`` that name fields, keys and indices (union tags dropped; each dropped tag
    is appended to ``tags`` as ``(position in loc, tag)``); ``None`` if ``loc`` does not fit ``schema``."""
    while True:
        t = schema.get("type")
        if t == "definitions":
            for d in schema.get("definitions", ()):
                if "ref" in d:
                    defs[d["ref"]] = d
            schema = schema["schema"]
            continue
        if t == "definition-ref":
            target = defs.get(schema.get("schema_ref", ""))
            if target is None:
                return list(loc[pos:])
            schema = target
            continue
        if pos >= len(loc):
            return []
        seg = loc[pos]
        if t in _WRAPPERS and isinstance(schema.get("schema"), Mapping):
            schema = schema["schema"]
        elif t == "json-or-python":
            schema = schema["python_schema"]
        elif t == "lax-or-strict":
            schema = schema["lax_schema"]
        elif t == "union":
            choices = [(c[0], c[1]) if isinstance(c, tuple) else (c, None) for c in schema.get("choices", ())]
            first = [c for c, label in choices if str(seg) in (label, _schema_name(c, defs))]
            mark = len(tags)
            for choice in first + [c for c, _ in choices if not any(c is f for f in first)]:
                tags.append((pos, str(seg)))
                rest = _walk(choice, loc, pos + 1, defs, tags)
                if rest is not None:
                    return rest
                del tags[mark:]
            return None
        elif t == "tagged-union":
            match = next((v for k, v in schema.get("choices", {}).items() if str(k) == str(seg)), None)
            if match is None:
                return None
            tags.append((pos, str(seg)))
            schema, pos = match, pos + 1
        elif t in ("model-fields", "typed-dict", "dataclass-args"):
            fields = schema.get("fields", {})
            items = fields if isinstance(fields, Mapping) else {f.get("name"): f for f in fields}
            field = next(
                (f for name, f in items.items() if seg == name or seg == f.get("validation_alias")),
                None,
            )
            if field is None:  # an unexpected key (extra="forbid") ends the path
                return [seg] if pos == len(loc) - 1 else None
            rest = _walk(field["schema"], loc, pos + 1, defs, tags)
            return None if rest is None else [seg, *rest]
        elif t in ("list", "set", "frozenset", "generator", "tuple"):
            if not isinstance(seg, int):
                return None
            items_schema = schema.get("items_schema")
            if isinstance(items_schema, list):  # tuple: one schema per position (or a variadic one)
                if not items_schema:
                    return None
                variadic = schema.get("variadic_item_index")
                index = variadic if variadic is not None and seg >= variadic else min(seg, len(items_schema) - 1)
                items_schema = items_schema[index]
            if not isinstance(items_schema, Mapping):
                return [seg] if pos == len(loc) - 1 else list(loc[pos:])
            rest = _walk(items_schema, loc, pos + 1, defs, tags)
            return None if rest is None else [seg, *rest]
        elif t == "dict":
            if pos + 1 < len(loc) and loc[pos + 1] == "[key]":
                return list(loc[pos : pos + 2]) if pos + 2 == len(loc) else None
            values = schema.get("values_schema")
            rest = [] if not isinstance(values, Mapping) else _walk(values, loc, pos + 1, defs, tags)
            return None if rest is None else [seg, *rest]
        elif t in _LEAVES:
            return None  # a scalar has no parts: loc does not fit
        else:  # a schema this walk does not know: keep the rest as pydantic wrote it
            return list(loc[pos:])


_FUNCTION_TAG = re.compile(r"^function-(?:after|before|wrap)\[.*, (.+)\]$")
_PLAIN_TAG = re.compile(r"^[A-Za-z_]\w*(\[[\w\[\], ]*\])?$")


def _member_label(tag: str, err: Mapping[str, Any]) -> str:
    """What a failed union member expected, in words: its type (``int``, ``list[int]``, ``Line``) or values."""
    while (m := _FUNCTION_TAG.match(tag)) is not None:
        tag = m.group(1)
    ctx = err.get("ctx") or {}
    if err.get("type") in ("literal_error", "enum") and "expected" in ctx:
        return str(ctx["expected"])
    msg = str(err.get("msg", "invalid value"))
    if tag.startswith("constrained-"):
        return f"{tag.removeprefix('constrained-')} ({msg})"
    if _PLAIN_TAG.match(tag):
        return tag
    return msg.removeprefix("Input should be ")


def _problem_text(err: Mapping[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unexpected field (not a parameter; remove it)"
    return f"{err.get('msg', 'invalid value')}; got {_short(err.get('input'))}"


def validation_problems(exc: ValidationError, model: type[BaseModel] | None = None) -> dict[str, str]:
    """Field path → what was expected (and what was given), one entry per bad field.

    With ``model`` (the model that raised ``exc``), the labels pydantic puts into a path for each member of a
    union (``x.int``, ``x.list[int]``) are dropped: they are not fields. A value that no member accepted is then
    one entry, ``expected int or list[int]; got ...``; where a member accepted the value's shape (a list, an
    object) only that member's deeper problems are listed.
    """
    errors = exc.errors(include_url=False)
    schema = getattr(model, "__pydantic_core_schema__", None) if model is not None else None
    cleaned: list[tuple[Mapping[str, Any], list[Any], tuple[Any, ...], list[tuple[int, str]]]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        tags: list[tuple[int, str]] = []
        path = _walk(schema, loc, 0, {}, tags) if isinstance(schema, Mapping) else None
        if path is None:
            path, tags = list(loc), []
        cleaned.append((err, path, loc, tags))
    # A union whose members accepted the value's shape (their errors go deeper): the other members' "not a ..."
    # errors at the union itself are noise, and of the members that went deeper only those with the fewest
    # problems are reported (a Cat's and a Dog's problems mixed would contradict each other).
    counts: dict[tuple[Any, ...], dict[str, int]] = {}
    for _, _, loc, tags in cleaned:
        for p, tag in tags:
            if len(loc) > p + 1:
                per_member = counts.setdefault(loc[:p], {})
                per_member[tag] = per_member.get(tag, 0) + 1
    best = {prefix: {t for t, n in per.items() if n == min(per.values())} for prefix, per in counts.items()}
    out: dict[str, str] = {}
    members: dict[str, list[tuple[str, Any]]] = {}
    for err, path, loc, tags in cleaned:
        at_union = bool(tags) and tags[-1][0] == len(loc) - 1
        if at_union and loc[: tags[-1][0]] in best:
            continue
        if any(tag not in best.get(loc[:p], (tag,)) for p, tag in tags):
            continue
        key = _loc(path)
        if at_union:
            members.setdefault(key, []).append((_member_label(tags[-1][1], err), err.get("input")))
            out.setdefault(key, "")
            continue
        text = _problem_text(err)
        out[key] = f"{out[key]}; {text}" if out.get(key) else text
    for key, found in members.items():
        labels = list(dict.fromkeys(label for label, _ in found))
        text = f"expected {' or '.join(labels)}; got {_short(found[0][1])}"
        out[key] = f"{text}; {out[key]}" if out[key] else text
    return out


def format_validation_error(
    exc: ValidationError,
    *,
    what: str,
    model: type[BaseModel] | None = None,
    problems: Mapping[str, str] | None = None,
    limit: int | None = MAX_LISTED_PROBLEMS,
) -> str:
    """Render a pydantic ``ValidationError`` as lines naming each bad field, fit to show a model.

    Pass ``model`` (the model that raised it) so that union member labels are not shown as fields, or the
    ``problems`` already computed by ``validation_problems``. At most ``limit`` fields are listed (``None``: all),
    then ``…and N more``; the first line gives the total.
    """
    if problems is None:
        problems = validation_problems(exc, model)
    lines = [f"{what}: {len(problems)} invalid field{'s' if len(problems) != 1 else ''}:"]
    shown = problems.items() if limit is None else list(problems.items())[: max(limit, 0)]
    lines += [f"- `{path}`: {text}" for path, text in shown]
    if len(shown) < len(problems):
        lines.append(f"…and {len(problems) - len(shown)} more")
    return "\n".join(lines)


# ---- results as JSON and text ---------------------------------------------------------------------------------


class _Unconvertible(Exception):
    """What a function returned cannot be turned into text (its ``str`` and ``repr`` raise, ...)."""


def _exc_text(e: BaseException) -> str:
    """``TypeName: message`` of an exception, even one whose ``__str__`` raises."""
    try:
        message = str(e)
    except Exception:
        message = "(its message cannot be shown)"
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def _text_of(obj: Any) -> str:
    """``str(obj)``, else ``repr(obj)``; ``_Unconvertible`` if both raise."""
    try:
        return str(obj)
    except Exception as e:
        first = e
    try:
        return repr(obj)
    except Exception:
        raise _Unconvertible(f"str() raised {_exc_text(first)}") from first


def _placeholder(obj: Any, top: Any) -> str:
    """The text for an object pydantic cannot serialise: its ``str``. Inside a container, an object that cannot
    be shown at all is named by its type; the returned value itself raises ``_Unconvertible`` instead."""
    if obj is top:
        return _text_of(obj)
    try:
        return _text_of(obj)
    except _Unconvertible:
        return f"<{type(obj).__qualname__} object that cannot be shown>"


def _finite(value: Any) -> Any:
    """``value`` with each NaN/infinite float replaced by ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _render(value: Any) -> tuple[Any, str]:
    """(``value`` as JSON types, its text for the model). A ``str`` is its own text; anything else is converted
    by pydantic (models, dataclasses, dates, tuples, sets, ... at any depth; bytes as UTF-8 text, or base64 when
    they are not UTF-8; an object pydantic does not know as its ``str``), and its text is JSON (a top-level
    pydantic model's compact, as ``model_dump_json`` writes it). Raises ``_Unconvertible``."""
    if isinstance(value, str):
        text = str.__str__(value)  # a str subclass: the characters, not its own __str__
        return text, text
    fallback = functools.partial(_placeholder, top=value)
    try:
        try:
            data = to_jsonable_python(value, by_alias=False, fallback=fallback)
        except UnicodeDecodeError:  # bytes that are not UTF-8
            data = to_jsonable_python(value, by_alias=False, fallback=fallback, bytes_mode="base64")
        separators = (",", ":") if isinstance(value, BaseModel) else None
        try:
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=separators)
        except ValueError:  # NaN or an infinity: not JSON
            data = _finite(data)
            text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=separators)
    except _Unconvertible:
        raise
    except Exception as e:  # a serializer that raises, a reference cycle, nesting too deep, ...
        try:
            data = _text_of(value)
        except _Unconvertible as inner:
            raise _Unconvertible(f"{_exc_text(e)}; and {inner}") from e
        text = json.dumps(data, ensure_ascii=False)
    return data, text


def _cap(text: str, limit: int | None) -> tuple[str, int | None]:
    """(``text`` cut to ``limit`` characters plus a note saying how many were left out, the full length when it
    was cut)."""
    if limit is None or len(text) <= limit:
        return text, None
    return f"{text[:limit]}\n…[truncated: {len(text) - limit} more characters]", len(text)


# ---- the tools' own threads ----------------------------------------------------------------------------------

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _tool_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The thread pool sync tools run on, created at first use (``import tq_agents`` starts no threads).

    A sync function cannot be stopped: after its timeout it keeps a thread until it returns. On a pool of their
    own such functions cannot take every worker of asyncio's default executor, which the rest of the program
    (``asyncio.to_thread``, ``loop.getaddrinfo``, ...) uses; and ``asyncio.run`` does not wait for them when it
    closes its loop. Calls beyond ``TOOL_THREADS`` running at once wait for a thread (within their timeout).
    """
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(max_workers=TOOL_THREADS, thread_name_prefix="tq-tool")
        return _executor


def _forget_executor() -> None:
    """In a forked child the parent's worker threads do not exist: start a fresh pool there."""
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_executor)


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(summary, {arg: description}) from a Google-style docstring."""
    if not doc:
        return "", {}
    doc = inspect.cleandoc(doc)
    lines = doc.splitlines()
    summary_lines: list[str] = []
    for line in lines:
        if not line.strip():
            break
        summary_lines.append(line.strip())
    args: dict[str, str] = {}
    in_args = False
    current: str | None = None
    base_indent = None
    for line in lines:
        stripped = line.strip()
        if re.match(r"^(Args|Arguments|Parameters):\s*$", stripped):
            in_args, current, base_indent = True, None, None
            continue
        if not in_args:
            continue
        if not stripped:
            current = None
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0 and stripped.endswith(":"):  # next section (Returns:, Raises:, ...)
            in_args = False
            continue
        if base_indent is None:
            base_indent = indent
        m = re.match(r"^\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$", stripped)
        if m and indent <= base_indent:
            current = m.group(1)
            args[current] = m.group(3).strip()
        elif current is not None:
            args[current] = (args[current] + " " + stripped).strip()
    return " ".join(summary_lines), args


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


def _check_options(name: Any, description: Any, timeout: Any, max_output_chars: Any = None) -> None:
    """Type-check ``@tool``'s options; a ``ToolDefinitionError`` naming the bad one."""
    if name is not None and not isinstance(name, str):
        raise ToolDefinitionError(
            f"@tool: name must be a str, got {_got(name)}", hint="e.g. @tool(name='lookup_order')"
        )
    label = f"tool {name!r}" if name is not None else "@tool"
    if description is not None and not isinstance(description, str):
        raise ToolDefinitionError(f"{label}: description must be a str, got {_got(description)}")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, numbers.Real)
        or not math.isfinite(float(timeout))
        or timeout <= 0
    ):
        raise ToolDefinitionError(
            f"{label}: timeout must be a positive number of seconds, got {_got(timeout)}",
            hint="e.g. timeout=5.0, or leave it out for no limit",
        )
    if max_output_chars is not None and (
        isinstance(max_output_chars, bool) or not isinstance(max_output_chars, numbers.Integral) or max_output_chars < 1
    ):
        raise ToolDefinitionError(
            f"{label}: max_output_chars must be a whole number of characters >= 1 or None, "
            f"got {_got(max_output_chars)}",
            hint=f"e.g. max_output_chars=10_000, or None for no limit (default {DEFAULT_MAX_OUTPUT_CHARS:_})",
        )


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], list[str | None], set[str]]:
    """(the function whose annotations describe ``fn``, its docstrings, argument names bound by a partial).

    ``functools.partial`` is looked through (its keyword arguments are fixed, not the model's to choose);
    a callable object is described by its class docstring and its ``__call__``.
    """
    bound: set[str] = set()
    target: Any = fn
    while isinstance(target, functools.partial):
        bound |= set(target.keywords)
        target = target.func
    if inspect.isroutine(target) or inspect.isclass(target):
        return target, [target.__doc__], bound
    call = type(target).__call__  # a callable object (callable() said it is one)
    return call, [type(target).__doc__, call.__doc__], bound


def _what(fn: Any) -> str:
    """``fn`` in words, for errors about naming it."""
    if isinstance(fn, functools.partial):
        inner = getattr(fn.func, "__name__", type(fn.func).__name__)
        return f"a functools.partial of {inner!r}"
    name = getattr(fn, "__name__", None)
    if name == "<lambda>":
        return "a lambda"
    if isinstance(name, str):
        return repr(name)
    return f"a {type(fn).__name__} object"


def _type_text(tp: Any) -> str:
    """A type annotation as a short name (``int``, ``list[str]``, ``Literal['a', 'b']``)."""
    if get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if isinstance(tp, type) and not get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "")


class Tool:
    """A callable tool: name, description, pydantic ``args_model``, OpenAI-shaped ``schema``.

    Build one with ``@tool`` (its options are described there). Call it with ``await t.call({...})`` (validated;
    returns ``ToolResult`` or ``ToolError``), ``t.call_sync({...})`` outside an event loop, or ``t(...)`` as the
    original function. A ``functools.partial`` or a callable object needs ``name=...``; a partial's keyword
    arguments are fixed.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
        max_output_chars: int | None = DEFAULT_MAX_OUTPUT_CHARS,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, got {type(fn).__name__}")
        _check_options(name, description, timeout, max_output_chars)
        self.max_output_chars: int | None = None if max_output_chars is None else int(max_output_chars)
        self.fn = fn
        if name is None:
            own = getattr(fn, "__name__", None)
            if not isinstance(own, str) or own.startswith("<"):
                raise ToolDefinitionError(
                    f"@tool cannot name {_what(fn)}: it has no usable __name__",
                    hint="pass name=..., e.g. tool(fn, name='lookup_order') or @tool(name='lookup_order')",
                )
            name = own
        self.name = name
        if not _NAME_RE.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not allowed",
                hint="use letters, digits, '_' or '-' (at most 64), starting with a letter or '_'",
            )
        self.timeout: float | None = None if timeout is None else float(timeout)
        target, docs, bound = _unwrap(fn)
        self._bound: frozenset[str] = frozenset(bound)
        for f in (fn, target):
            if inspect.isgeneratorfunction(f) or inspect.isasyncgenfunction(f):
                kind = "an async generator" if inspect.isasyncgenfunction(f) else "a generator"
                raise ToolDefinitionError(
                    f"tool {self.name!r}: {_what(fn)} is {kind} function (it yields); a tool returns one result",
                    hint="collect the items and return them, e.g. `return list(...)` (an async tool: "
                    "`return [x async for x in ...]`)",
                )
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(target)
        summary, arg_docs = "", {}
        for doc in docs:
            doc_summary, doc_args = _parse_docstring(doc)
            summary = summary or doc_summary
            arg_docs = {**doc_args, **arg_docs}
        self.description = description if description is not None else summary
        self.args_model = self._build_args_model(target, arg_docs)
        params = _strip_titles(self.args_model.model_json_schema())
        params.setdefault("properties", {})
        params.setdefault("required", [])
        self.parameters: dict[str, Any] = params
        self.schema: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }
        if inspect.isfunction(fn) or inspect.ismethod(fn):
            functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        else:  # a partial or callable object: its own attributes (``name``, ...) must not land on the Tool
            self.__wrapped__ = fn
            self.__name__ = self.__qualname__ = self.name
            self.__doc__ = next((d for d in docs if d), None)

    def _build_args_model(self, target: Callable[..., Any], arg_docs: Mapping[str, str]) -> type[BaseModel]:
        sig = inspect.signature(self.fn)
        try:
            hints = get_type_hints(target, include_extras=True)
        except Exception as e:  # unresolvable forward reference
            raise ToolDefinitionError(f"tool {self.name!r}: cannot resolve type hints: {e}") from e
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if pname in self._bound:
                continue  # fixed by functools.partial
            if param.kind is inspect.Parameter.VAR_POSITIONAL:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *{pname} cannot be described to a model",
                    hint="list each argument as a typed parameter",
                )
            if param.kind is inspect.Parameter.VAR_KEYWORD:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: **{pname} cannot be described to a model",
                    hint="list each argument as a typed parameter",
                )
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: parameter {pname!r} is positional-only; a tool is called with keyword "
                    "arguments",
                    hint=f"remove the '/' from the signature so that {pname!r} can be passed by name",
                )
            if pname not in hints:
                raise ToolDefinitionError(
                    f"tool {self.name!r}: parameter {pname!r} has no type annotation",
                    hint=f"annotate it, e.g. `{pname}: str`",
                )
            default = ... if param.default is inspect.Parameter.empty else param.default
            hint = hints[pname]
            described = any(isinstance(m, FieldInfo) and m.description for m in getattr(hint, "__metadata__", ())) or (
                isinstance(default, FieldInfo) and default.description
            )
            if isinstance(default, FieldInfo):
                info = default
            else:
                doc = None if described else arg_docs.get(pname)
                info = Field(default=default, description=doc) if doc else Field(default=default)
            if not described and isinstance(default, FieldInfo) and pname in arg_docs:
                hint = Annotated[hint, Field(description=arg_docs[pname])]
            fields[pname] = (hint, info)
        model_name = "".join(p.capitalize() for p in re.split(r"[_-]", self.name) if p) + "Args"
        try:
            model = create_model(  # type: ignore[call-overload]
                model_name, __config__=ConfigDict(extra="forbid"), **fields
            )
        except Exception as e:
            raise ToolDefinitionError(f"tool {self.name!r}: cannot build an argument model: {e}") from e
        self._check_defaults(model_name, fields)
        return model  # type: ignore[no-any-return]

    def _check_defaults(self, model_name: str, fields: Mapping[str, tuple[Any, FieldInfo]]) -> None:
        """Refuse a default that its parameter's type does not accept (``x: int = "abc"``); a call that leaves
        the argument out would run the function with it. ``default_factory`` values are not built here."""
        plain = {
            pname: (hint, FieldInfo.merge_field_infos(info, validate_default=True))
            for pname, (hint, info) in fields.items()
            if info.default is not PydanticUndefined and info.default is not ... and info.default_factory is None
        }
        if not plain:
            return
        try:
            checker = create_model(f"{model_name}Defaults", **plain)  # type: ignore[call-overload]
        except Exception:  # pragma: no cover - the argument model with the same fields was built
            return
        try:
            checker.model_validate({})
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            loc = tuple(err.get("loc", ()))
            pname = str(loc[0]) if loc else next(iter(plain))
            where = f" (at {_loc(loc)})" if len(loc) > 1 else ""
            raise ToolDefinitionError(
                f"tool {self.name!r}: the default of parameter {pname!r} is {plain[pname][1].default!r}, which is "
                f"not a valid {_type_text(plain[pname][0])}{where}: {err.get('msg', 'invalid value')}",
                hint=f"change the default or the annotation of {pname!r}",
            ) from None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, timeout={self.timeout}, max_output_chars={self.max_output_chars})"

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel | ToolError:
        """Validate ``arguments``; the model instance, or an ``invalid_arguments`` ``ToolError``."""
        if not isinstance(arguments, Mapping):
            return ToolError(
                tool=self.name,
                kind="invalid_arguments",
                content=f"tool `{self.name}`: arguments must be a JSON object, got {_short(arguments)}",
            )
        try:
            return self.args_model.model_validate(dict(arguments))
        except ValidationError as e:
            problems = validation_problems(e, self.args_model)
            what = f"tool `{self.name}` was called with invalid arguments"
            text = format_validation_error(e, what=what, problems=problems, limit=MAX_LISTED_PROBLEMS)
            expected = ", ".join(f"{k}" for k in self.parameters.get("properties", {}))
            text += f"\nParameters: {expected or '(none)'}. Fix the listed fields and call the tool again."
            return ToolError(tool=self.name, kind="invalid_arguments", content=text, fields=problems)

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult | ToolError:
        """Validate, then run the function (bounded by ``timeout``) and convert its result.

        Never raises for call problems: bad arguments, an exception inside the function, a timeout, or a result
        that cannot be converted to text each come back as a ``ToolError``. (Cancelling the awaiting task still
        cancels the call.)
        """
        validated = self.validate(arguments)
        if isinstance(validated, ToolError):
            return validated
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        t0 = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            if self.timeout:
                async with asyncio.timeout(self.timeout) as deadline:
                    value = await self._run(kwargs)
            else:
                value = await self._run(kwargs)
        except TimeoutError as e:
            if deadline is None or not deadline.expired():
                # The function itself raised TimeoutError (a socket or HTTP timeout, ...): an ordinary exception.
                return self._error("exception", f"tool `{self.name}` failed: {_exc_text(e)}", t0)
            return self._error(
                "timeout", f"tool `{self.name}` timed out after {self.timeout:g} s; try simpler arguments", t0
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return self._error("exception", f"tool `{self.name}` failed: {_exc_text(e)}", t0)
        if inspect.isgenerator(value) or inspect.isasyncgen(value):
            return self._error(
                "bad_result",
                f"tool `{self.name}` returned a {type(value).__name__} instead of a result; its body did not run. "
                "This is a bug in the tool, not in the arguments.",
                t0,
            )
        try:
            data, text = _render(value)
        except _Unconvertible as e:
            return self._error(
                "bad_result",
                f"tool `{self.name}` ran, but its result (of type {type(value).__name__}) cannot be converted to "
                f"text: {e}",
                t0,
            )
        content, original = _cap(text, self.max_output_chars)
        return ToolResult(
            tool=self.name,
            value=data if original is None else None,
            content=content,
            duration_s=time.perf_counter() - t0,
            truncated=original is not None,
            original_chars=original,
        )

    async def _run(self, kwargs: dict[str, Any]) -> Any:
        """Run the function: an async one on this loop, a sync one on the tools' own threads (``_tool_executor``;
        a coroutine it returns, as a sync wrapper of an async function does, is awaited here)."""
        if self.is_async:
            return await self.fn(**kwargs)
        loop = asyncio.get_running_loop()
        run = functools.partial(contextvars.copy_context().run, self.fn, **kwargs)
        value = await loop.run_in_executor(_tool_executor(), run)
        if inspect.isawaitable(value):
            value = await value
        return value

    def _error(self, kind: ToolErrorKind, text: str, t0: float) -> ToolError:
        content, _ = _cap(text, self.max_output_chars)
        return ToolError(tool=self.name, kind=kind, content=content, duration_s=time.perf_counter() - t0)

    def call_sync(self, arguments: Mapping[str, Any]) -> ToolResult | ToolError:
        """``call`` for code that is not inside an event loop (inside one, ``await tool.call(...)``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.call(arguments))
        raise UserError(
            f"tool {self.name!r}: call_sync() was called inside a running event loop",
            hint=f"use `await {self.name}.call(...)` there",
        )


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output_chars: int | None = DEFAULT_MAX_OUTPUT_CHARS,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_output_chars: int | None = DEFAULT_MAX_OUTPUT_CHARS,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed sync or async function into a ``Tool``. Use bare (``@tool``) or with options.

    The function returns one result (a generator function is refused). A ``str`` is shown to the model as it is;
    anything else is converted to JSON (``ToolResult.value``) and shown as JSON text: pydantic models,
    dataclasses, dates (ISO 8601), tuples and sets at any depth; bytes as UTF-8 text, or base64 when they are not
    UTF-8; NaN and infinite floats as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; an object of
    another type as its ``str()``. A result that cannot be converted at all is a ``bad_result`` ToolError.

    Args:
        fn: The function (when used bare).
        name: Tool name shown to the model; defaults to the function name.
        description: Overrides the docstring summary.
        timeout: Seconds after which a call returns a ``timeout`` ToolError. An async function is cancelled
            then. A sync function cannot be stopped (Python cannot stop a thread): the model is told that the
            call timed out, but the function keeps running to its end in its thread, and what it returns then
            is discarded. Its side effects still happen, and the Python process waits for it before it exits.
            Write work that must stop at the timeout as an ``async def`` tool. Sync tools run on a pool of
            ``TOOL_THREADS`` threads of their own (named ``tq-tool-...``), so functions still running after a
            timeout do not hold up asyncio's default executor.
        max_output_chars: At most this many characters of the result text are shown to the model (default
            ``DEFAULT_MAX_OUTPUT_CHARS``, 30,000, about 7,500 tokens); the rest is left out with a note
            ``…[truncated: N more characters]``, and the ``ToolResult`` says ``truncated=True`` with the full
            length in ``original_chars``; its ``value`` is then ``None`` (a huge value is not kept). The
            text of an exception is cut the same way. ``None``: no limit (for a tool that bounds its own
            output).

    Raises:
        ToolDefinitionError: an option of the wrong type, or a function that cannot be described to a model
            (an untyped, positional-only or ``*args`` parameter, a default its type does not accept, a generator
            function, ...).
    """
    _check_options(name, description, timeout, max_output_chars)
    if fn is not None:
        return Tool(fn, name=name, description=description, timeout=timeout, max_output_chars=max_output_chars)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout=timeout, max_output_chars=max_output_chars)

    return wrap
