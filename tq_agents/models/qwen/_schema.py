"""A compact JSON-schema checker for tool arguments, and schema-driven typing of text values.

Covers the subset pydantic emits for tool parameters: ``type`` (one or a list), ``enum``, ``const``,
``properties``, ``required``, ``additionalProperties``, ``items``/``prefixItems``, ``anyOf``/``oneOf``/
``allOf``, ``$ref`` into ``$defs``/``definitions``, string/array/number bounds, ``pattern``,
``uniqueItems``. Unknown keywords (``format``, ``title``, ``default``, ``description``...) are ignored.

``coerce`` turns what a model wrote into the schema's types where that is unambiguous (``"5"`` → ``5``
for an integer, ``"true"`` → ``True``, a JSON text → an object); ``check`` lists every violation in words
fit to show the model. Neither raises for any value or schema.
"""

from __future__ import annotations

import math
import re
from typing import Any

from tq_agents.models.qwen._json_repair import LenientJSONError, loads_lenient

__all__ = ["check", "coerce", "describe", "text_to_value", "type_names"]

_MAX_ERRORS = 8
_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_RE_CACHE: dict[str, re.Pattern[str] | None] = {}


def describe(value: Any) -> str:
    """A short description of a value for an error message: ``string 'abc'``, ``integer 5``, ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _resolve(schema: Any, root: Any, seen: int = 0) -> Any:
    """Follow ``$ref`` (local ``#/...`` pointers only) until a non-ref schema; unresolvable → ``{}``."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 32:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        target: Any = root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and part in target:
                target = target[part]
            else:
                return {}
        if len(schema) > 1:  # siblings of $ref (pydantic puts description/default there): merge, ref wins
            merged = {k: v for k, v in schema.items() if k != "$ref"}
            if isinstance(target, dict):
                merged.update(target)
            target = merged
        schema = target
        seen += 1
    return schema


def type_names(schema: Any, root: Any) -> set[str] | None:
    """The JSON types a schema admits, or None when it does not say (no ``type``, no union of typed branches)."""
    s = _resolve(schema, root)
    if not isinstance(s, dict):
        return None
    t = s.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    branches = s.get("anyOf") or s.get("oneOf")
    if isinstance(branches, list):
        out: set[str] = set()
        for b in branches:
            bt = type_names(b, root)
            if bt is None:
                return None
            out |= bt
        return out
    if "enum" in s and isinstance(s["enum"], list):
        return {_json_type(v) for v in s["enum"]}
    if "const" in s:
        return {_json_type(s["const"])}
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "unknown"


def _is_type(value: Any, t: str) -> bool:
    if t == "string":
        return isinstance(value, str)
    if t == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if t == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if t == "boolean":
        return isinstance(value, bool)
    if t == "null":
        return value is None
    if t == "object":
        return isinstance(value, dict)
    if t == "array":
        return isinstance(value, list)
    return True  # unknown type names are not ours to refuse


def _str_to(text: str, t: str) -> tuple[bool, Any]:
    """Convert text to type ``t``; ``(False, None)`` when it does not read as one."""
    s = text.strip()
    if t == "null":
        return (True, None) if s in ("null", "None") else (False, None)
    if t == "boolean":
        low = s.lower()
        if low == "true":
            return True, True
        if low == "false":
            return True, False
        return False, None
    if t == "integer":
        if _INT_RE.fullmatch(s) and len(s) < 400:
            return True, int(s.split(".")[0])
        return False, None
    if t == "number":
        if _FLOAT_RE.fullmatch(s) and len(s) < 400:
            if _INT_RE.fullmatch(s) and "." not in s:
                return True, int(s)
            v = float(s)
            return (True, v) if math.isfinite(v) else (False, None)
        return False, None
    if t in ("object", "array"):
        if not s or s[0] not in "{[":
            return False, None
        try:
            v, _ = loads_lenient(s)
        except LenientJSONError:
            return False, None
        return (True, v) if _is_type(v, t) else (False, None)
    if t == "string":
        return True, text
    return False, None


_PREFERENCE = ("null", "boolean", "integer", "number", "object", "array")


def text_to_value(text: str, schema: Any, root: Any) -> Any:
    """Type a Qwen3-Coder parameter's plain text by its schema.

    With no usable schema, the text stays a string unless it is a JSON object or array.
    """
    types = type_names(schema, root)
    if types is None:
        ok, v = _str_to(text, "object")
        if ok:
            return v
        ok, v = _str_to(text, "array")
        return v if ok else text
    return coerce(text, schema, root)


def coerce(value: Any, schema: Any, root: Any, depth: int = 0) -> Any:
    """Bring ``value`` to the schema's types where that is unambiguous; otherwise return it unchanged."""
    if depth > 64:
        return value
    s = _resolve(schema, root)
    if not isinstance(s, dict):
        return value
    branches = s.get("anyOf") or s.get("oneOf")
    if isinstance(branches, list) and branches:
        for b in branches:
            if not _errors(value, b, root, "", depth + 1, stop=1):
                return value
        for b in branches:
            v = coerce(value, b, root, depth + 1)
            if v is not value and not _errors(v, b, root, "", depth + 1, stop=1):
                return v
        return value
    types = type_names(s, root)
    if types:
        if isinstance(value, str) and "string" not in types:
            for t in _PREFERENCE:
                if t in types:
                    ok, v = _str_to(value, t)
                    if ok:
                        value = v
                        break
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and "string" in types
            and not types & {"integer", "number"}
        ):
            value = str(value)
        elif isinstance(value, float) and "integer" in types and "number" not in types and _is_type(value, "integer"):
            value = int(value)
    if isinstance(value, dict):
        props = s.get("properties")
        props = props if isinstance(props, dict) else {}
        extra = s.get("additionalProperties")
        out = {}
        for k, v in value.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            out[k] = coerce(v, sub, root, depth + 1) if sub is not None else v
        return out
    if isinstance(value, list):
        items = s.get("items")
        prefix = s.get("prefixItems")
        out_list = []
        for i, v in enumerate(value):
            sub = prefix[i] if isinstance(prefix, list) and i < len(prefix) else items
            out_list.append(coerce(v, sub, root, depth + 1) if isinstance(sub, dict) else v)
        return out_list
    return value


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    ta, tb = _json_type(a), _json_type(b)
    if ta != tb and not (ta in ("integer", "number") and tb in ("integer", "number")):
        return False
    try:
        return bool(a == b)
    except Exception:
        return False


def _pattern(p: str) -> re.Pattern[str] | None:
    if p not in _RE_CACHE:
        try:
            _RE_CACHE[p] = re.compile(p)
        except (re.error, RecursionError, OverflowError):
            _RE_CACHE[p] = None
    return _RE_CACHE[p]


_BOUNDS: tuple[tuple[str, Any, str], ...] = (
    ("minimum", lambda v, b: v < b, "at least"),
    ("maximum", lambda v, b: v > b, "at most"),
    ("exclusiveMinimum", lambda v, b: v <= b, "greater than"),
    ("exclusiveMaximum", lambda v, b: v >= b, "less than"),
)


def _name(path: str) -> str:
    return f"'{path}'" if path else "the arguments"


def _errors(value: Any, schema: Any, root: Any, path: str, depth: int = 0, stop: int = _MAX_ERRORS) -> list[str]:
    if depth > 64:
        return []
    if schema is False:
        return [f"{_name(path)} is not allowed"]
    s = _resolve(schema, root)
    if not isinstance(s, dict):
        return []
    errs: list[str] = []
    where = _name(path)

    if isinstance(s.get("allOf"), list):
        for b in s["allOf"]:
            errs += _errors(value, b, root, path, depth + 1, stop)
    for key in ("anyOf", "oneOf"):
        branches = s.get(key)
        if isinstance(branches, list) and branches:
            results = [_errors(value, b, root, path, depth + 1, stop) for b in branches]
            passing = sum(1 for r in results if not r)
            if passing == 0:
                allowed = type_names({key: branches}, root)
                if allowed:
                    errs.append(f"{where}: expected {' or '.join(sorted(allowed))}, got {describe(value)}")
                else:
                    best = min(results, key=len)
                    errs.append(f"{where} matches none of the allowed forms ({best[0]})")
            elif key == "oneOf" and passing > 1:
                errs.append(f"{where} matches more than one of the allowed forms; make it match exactly one")
    if errs:
        return errs[:stop]

    t = s.get("type")
    types = [t] if isinstance(t, str) else [x for x in t if isinstance(x, str)] if isinstance(t, list) else None
    if types is not None and not any(_is_type(value, x) for x in types):
        return [f"{where}: expected {' or '.join(types)}, got {describe(value)}"]
    if isinstance(s.get("enum"), list) and not any(_same(value, e) for e in s["enum"]):
        choices = ", ".join(repr(e) for e in s["enum"][:12])
        return [f"{where}: {describe(value)} is not one of the allowed values ({choices})"]
    if "const" in s and not _same(value, s["const"]):
        return [f"{where} must be {s['const']!r}, got {describe(value)}"]

    if isinstance(value, str):
        n = len(value)
        if isinstance(s.get("minLength"), int) and n < s["minLength"]:
            errs.append(f"{where} must be at least {s['minLength']} characters long, got {n}")
        if isinstance(s.get("maxLength"), int) and n > s["maxLength"]:
            errs.append(f"{where} must be at most {s['maxLength']} characters long, got {n}")
        if isinstance(s.get("pattern"), str):
            rx = _pattern(s["pattern"])
            if rx is not None and not rx.search(value):
                errs.append(f"{where} must match the pattern {s['pattern']!r}, got {describe(value)}")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        for key, bad, words in _BOUNDS:
            bound = s.get(key)
            if bound is None:
                continue
            if isinstance(bound, int | float) and not isinstance(bound, bool) and bad(value, bound):
                errs.append(f"{where} must be {words} {bound}, got {value!r}")
        m = s.get("multipleOf")
        if isinstance(m, int | float) and not isinstance(m, bool) and m > 0:
            q = value / m
            if math.isfinite(q) and abs(q - round(q)) > 1e-9:
                errs.append(f"{where} must be a multiple of {m}, got {value!r}")
    elif isinstance(value, list):
        n = len(value)
        if isinstance(s.get("minItems"), int) and n < s["minItems"]:
            errs.append(f"{where} must have at least {s['minItems']} items, got {n}")
        if isinstance(s.get("maxItems"), int) and n > s["maxItems"]:
            errs.append(f"{where} must have at most {s['maxItems']} items, got {n}")
        if s.get("uniqueItems") is True:
            for i in range(n):
                if any(_same(value[i], value[j]) for j in range(i)):
                    errs.append(f"{where} must not repeat items (item {i} repeats an earlier one)")
                    break
        prefix = s.get("prefixItems") if isinstance(s.get("prefixItems"), list) else []
        items = s.get("items")
        if isinstance(items, list):  # draft-4 tuple form
            prefix, items = items, s.get("additionalItems")
        for i, v in enumerate(value):
            sub = prefix[i] if i < len(prefix) else items
            if sub is not None and sub is not True:
                errs += _errors(v, sub, root, f"{path}[{i}]", depth + 1, stop)
            if len(errs) >= stop:
                break
    elif isinstance(value, dict):
        props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
        required = s.get("required") if isinstance(s.get("required"), list) else []
        missing = [r for r in required if isinstance(r, str) and r not in value]
        for r in missing:
            errs.append(f"{_name(_join(path, r))} is required but missing")
        extra = s.get("additionalProperties", True)
        for k, v in value.items():
            sub_path = _join(path, str(k))
            if k in props:
                errs += _errors(v, props[k], root, sub_path, depth + 1, stop)
            elif extra is False:
                known = ", ".join(repr(p) for p in props) or "none"
                errs.append(f"{_name(sub_path)} is not a known argument (known: {known})")
            elif isinstance(extra, dict):
                errs += _errors(v, extra, root, sub_path, depth + 1, stop)
            if len(errs) >= stop:
                break
        if isinstance(s.get("minProperties"), int) and len(value) < s["minProperties"]:
            errs.append(f"{where} must have at least {s['minProperties']} entries")
        if isinstance(s.get("maxProperties"), int) and len(value) > s["maxProperties"]:
            errs.append(f"{where} must have at most {s['maxProperties']} entries")
    return errs[:stop]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check(value: Any, schema: Any, root: Any | None = None) -> list[str]:
    """Every way ``value`` fails ``schema`` (at most a few), each naming the argument; empty when it passes."""
    try:
        return _errors(value, schema, schema if root is None else root, "")
    except RecursionError:
        return ["the arguments are nested too deeply to check"]
