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
function, or timeouts). ``ToolError.content`` names each bad field and what was expected, in words fit to
show the model. The decorated object stays callable like the original function.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, Literal, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from tq_agents.errors import ToolDefinitionError

__all__ = ["Tool", "ToolError", "ToolResult", "format_validation_error", "tool"]

_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]{0,63}$")


class ToolResult(BaseModel):
    """A tool call that ran to completion."""

    ok: Literal[True] = True
    tool: str = Field(description="Name of the tool.")
    value: Any = Field(default=None, description="What the function returned (JSON-able where possible).")
    content: str = Field(description="The value as text, as it is shown to the model in the tool message.")
    duration_s: float = Field(default=0.0, description="Wall-clock seconds the call took.")


class ToolError(BaseModel):
    """A tool call that did not produce a result. ``content`` is the text the model is shown."""

    ok: Literal[False] = False
    tool: str = Field(description="Name of the tool (as the model wrote it).")
    kind: Literal["invalid_arguments", "exception", "timeout", "unknown_tool", "malformed_call"] = Field(
        description="What went wrong."
    )
    content: str = Field(description="What went wrong and what to do next, in words fit to show the model.")
    fields: dict[str, str] = Field(
        default_factory=dict, description="For invalid_arguments: bad field path → what was expected."
    )
    duration_s: float = 0.0


def _loc(loc: tuple[Any, ...]) -> str:
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


def validation_problems(exc: ValidationError) -> dict[str, str]:
    """Field path → what was expected (and what was given), one entry per bad field."""
    out: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        path = _loc(tuple(err.get("loc", ())))
        kind = err.get("type", "")
        if kind == "missing":
            text = "required field is missing"
        elif kind == "extra_forbidden":
            text = "unexpected field (not a parameter; remove it)"
        else:
            text = f"{err.get('msg', 'invalid value')}; got {_short(err.get('input'))}"
        out[path] = f"{out[path]}; {text}" if path in out else text
    return out


def format_validation_error(exc: ValidationError, *, what: str) -> str:
    """Render a pydantic ``ValidationError`` as lines naming each bad field, fit to show a model."""
    problems = validation_problems(exc)
    lines = [f"{what}: {len(problems)} invalid field{'s' if len(problems) != 1 else ''}:"]
    lines += [f"- `{path}`: {text}" for path, text in problems.items()]
    return "\n".join(lines)


def _to_content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return _to_content(value)


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


class Tool:
    """A callable tool: name, description, pydantic ``args_model``, OpenAI-shaped ``schema``.

    Build one with ``@tool``. Call it with ``await t.call({...})`` (validated; returns ``ToolResult`` or
    ``ToolError``), ``t.call_sync({...})`` outside an event loop, or ``t(...)`` as the original function.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        timeout: float | None = None,
    ) -> None:
        if not callable(fn):
            raise ToolDefinitionError(f"@tool needs a function, got {type(fn).__name__}")
        self.fn = fn
        self.name = name or fn.__name__
        if not _NAME_RE.match(self.name):
            raise ToolDefinitionError(
                f"tool name {self.name!r} is not allowed",
                hint="use letters, digits, '_' or '-' (at most 64), starting with a letter or '_'",
            )
        if timeout is not None and timeout <= 0:
            raise ToolDefinitionError(f"tool {self.name!r}: timeout must be > 0 seconds, got {timeout}")
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        summary, arg_docs = _parse_docstring(fn.__doc__)
        self.description = description if description is not None else summary
        self.args_model = self._build_args_model(arg_docs)
        params = _strip_titles(self.args_model.model_json_schema())
        params.setdefault("properties", {})
        params.setdefault("required", [])
        self.parameters: dict[str, Any] = params
        self.schema: dict[str, Any] = {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def _build_args_model(self, arg_docs: Mapping[str, str]) -> type[BaseModel]:
        fn = self.fn
        sig = inspect.signature(fn)
        try:
            hints = get_type_hints(fn, include_extras=True)
        except Exception as e:  # unresolvable forward reference
            raise ToolDefinitionError(f"tool {self.name!r}: cannot resolve type hints: {e}") from e
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise ToolDefinitionError(
                    f"tool {self.name!r}: *{pname} / **{pname} cannot be described to a model",
                    hint="list each argument as a typed parameter",
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
            return create_model(  # type: ignore[call-overload, no-any-return]
                model_name, __config__=ConfigDict(extra="forbid"), **fields
            )
        except Exception as e:
            raise ToolDefinitionError(f"tool {self.name!r}: cannot build an argument model: {e}") from e

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, timeout={self.timeout})"

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
            text = format_validation_error(e, what=f"tool `{self.name}` was called with invalid arguments")
            expected = ", ".join(f"{k}" for k in self.parameters.get("properties", {}))
            text += f"\nParameters: {expected or '(none)'}. Fix the listed fields and call the tool again."
            return ToolError(tool=self.name, kind="invalid_arguments", content=text, fields=validation_problems(e))

    async def call(self, arguments: Mapping[str, Any]) -> ToolResult | ToolError:
        """Validate, then run the function (bounded by ``timeout``). Never raises for call problems."""
        validated = self.validate(arguments)
        if isinstance(validated, ToolError):
            return validated
        kwargs = {k: getattr(validated, k) for k in type(validated).model_fields}
        t0 = time.perf_counter()
        deadline: asyncio.Timeout | None = None
        try:
            if self.is_async:
                aw: Awaitable[Any] = self.fn(**kwargs)
            else:
                aw = asyncio.to_thread(self.fn, **kwargs)
            if self.timeout:
                async with asyncio.timeout(self.timeout) as deadline:
                    value = await aw
            else:
                value = await aw
        except TimeoutError as e:
            if deadline is None or not deadline.expired():
                # The function itself raised TimeoutError (a socket or HTTP timeout, ...): an ordinary exception.
                return ToolError(
                    tool=self.name,
                    kind="exception",
                    content=f"tool `{self.name}` failed: {type(e).__name__}: {e}",
                    duration_s=time.perf_counter() - t0,
                )
            return ToolError(
                tool=self.name,
                kind="timeout",
                content=f"tool `{self.name}` timed out after {self.timeout:g} s; try simpler arguments",
                duration_s=time.perf_counter() - t0,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:
            return ToolError(
                tool=self.name,
                kind="exception",
                content=f"tool `{self.name}` failed: {type(e).__name__}: {e}",
                duration_s=time.perf_counter() - t0,
            )
        return ToolResult(
            tool=self.name, value=_jsonable(value), content=_to_content(value), duration_s=time.perf_counter() - t0
        )

    def call_sync(self, arguments: Mapping[str, Any]) -> ToolResult | ToolError:
        """``call`` for code that is not inside an event loop."""
        return asyncio.run(self.call(arguments))


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed sync or async function into a ``Tool``. Use bare (``@tool``) or with options.

    Args:
        fn: The function (when used bare).
        name: Tool name shown to the model; defaults to the function name.
        description: Overrides the docstring summary.
        timeout: Seconds after which a call returns a ``timeout`` ToolError.
    """
    if fn is not None:
        return Tool(fn, name=name, description=description, timeout=timeout)

    def wrap(f: Callable[..., Any]) -> Tool:
        return Tool(f, name=name, description=description, timeout=timeout)

    return wrap
