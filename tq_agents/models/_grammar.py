"""Grammar-constrained decoding for Qwen: tool calls in Qwen's ``<tool_call>`` format and JSON outputs.

Library: llguidance (Rust, no torch needed), chosen by measurement with the Qwen vocabulary on this 2-core CPU,
same bounded ``Order`` JSON schema, random logits, 10 seeds: llguidance compiles it in 7.6 ms, masks+applies in
114 µs/token (median; p90 585 µs) and 10/10 outputs validate; xgrammar 0.2.9 compiles in 22 ms, masks+applies in
613 µs/token, ignores ``multipleOf`` (so numbers are unbounded: no termination guarantee) and let a raw tab into a
JSON string (1/10 invalid); it also requires torch+triton. outlines wraps one of the two. On the Qwen2.5-0.5B-shape
model the grammar costs ~0.4 ms of a ~150-300 ms decode step (``benchmarks/constrained.py``).

Every grammar built here **terminates by construction** within the request's token budget — random-weight
models never choose ``<|im_end|>`` on their own, so free-running JSON would never end:

* whitespace is fixed (compact JSON with ``", "`` / ``": "`` separators, like ``json.dumps``);
* strings get a ``maxLength`` derived from the budget (worst case one token per character), never below what
  their ``minLength``/``pattern``/``format`` needs;
* arrays get ``maxItems``; objects get ``additionalProperties: false`` (and ``maxProperties`` for maps, never
  below what ``required``/``minProperties`` need; keys of maps are bounded through ``patternProperties``);
* integers and numbers get bounds, numbers a ``multipleOf`` step, so digits are bounded;
* the number of tool calls is bounded.

Every output validates against the schema: llguidance runs without ``lenient``, and :func:`check_schema` refuses
(``ModelRequestError`` naming each keyword and where) the assertions it cannot enforce (``not``, ``contains``,
``if``/``then``/``else``, ``dependentRequired``, ``propertyNames``, ``unevaluated*``) and drops annotations it
would refuse (``format`` values it does not know). The one exception is ``uniqueItems`` (a ``set[...]`` field):
it is checked after decoding, not by the grammar — a tool call that repeats an item is refused with the reason
like any invalid call, and an agent's output type validates its output. A schema that compiles but not once
bounded to the budget is refused blaming ``max_tokens``.

``TokenConstraint`` objects (see ``tq_agents.models._engine``) wrap one ``llguidance.LLMatcher`` each; the mask
is written by llguidance straight into a preallocated buffer, unpacked with numpy and applied with one
``masked_fill_``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tq_agents.errors import ModelRequestError

if TYPE_CHECKING:  # pragma: no cover
    import llguidance
    import torch

__all__ = [
    "GrammarCompiler",
    "GrammarLimits",
    "LLGuidanceConstraint",
    "LazyToolCallConstraint",
    "bound_schema",
    "check_schema",
    "json_output_grammar",
    "tool_call_grammar",
    "xml_tool_call_grammar",
]

log = logging.getLogger(__name__)

_JSON_OPTS = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", ", "lenient": False}
_INT_ABS_MAX = 10**15
_NUM_ABS_MAX = 1e12
_NUM_STEP = 1e-4
_ANY_SCALAR: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
# string formats llguidance (1.9) enforces, with the fewest characters a value of each needs; any other format
# is an annotation only (JSON Schema's default) that llguidance refuses without "lenient": it is dropped
_FORMAT_MIN_CHARS = {
    "date-time": 20,
    "time": 9,
    "date": 10,
    "duration": 3,
    "email": 3,
    "hostname": 1,
    "ipv4": 7,
    "ipv6": 2,
    "uri": 2,
    "uuid": 36,
    "unknown": 0,
}
# assertions llguidance does not implement: with "lenient" it would ignore them and outputs could violate them
_UNSUPPORTED = frozenset(
    {
        "not",
        "contains",
        "minContains",
        "maxContains",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "dependencies",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
    }
)
_OUTPUT_SCHEMA = "the response_format JSON schema"
_SUB_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUB_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_ONE = (
    "items",
    "additionalItems",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)


@dataclass(frozen=True)
class GrammarLimits:
    """Bounds that make every grammar finish within ``max_tokens`` tokens."""

    max_tokens: int = 1024
    max_calls: int = 4
    max_array_items: int = 8
    min_string_chars: int = 8
    max_string_chars: int = 8192
    think_chars: int = 0  # > 0: allow a Qwen3 <think> block of at most this many characters first


# ---------------------------------------------------------------------------------------------------------------
# schema checks: keywords llguidance cannot enforce are refused (naming where), harmless annotations dropped
# ---------------------------------------------------------------------------------------------------------------


def _pointer(path: Sequence[str]) -> str:
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _no_op(key: str, s: Mapping[str, Any]) -> bool:
    """True when keyword ``key`` of ``s`` asserts nothing (JSON Schema ignores it there), so it can be dropped."""
    value = s[key]
    if key in ("minContains", "maxContains"):
        return "contains" not in s
    if key in ("then", "else"):
        return "if" not in s
    if key == "if":
        return "then" not in s and "else" not in s
    if key in ("dependentRequired", "dependentSchemas", "dependencies"):
        return isinstance(value, Mapping) and not value
    if key in ("propertyNames", "unevaluatedProperties", "unevaluatedItems"):
        return value is True or value == {}
    return False


def _sanitize(schema: Any, path: tuple[str, ...], problems: list[tuple[str, str]]) -> Any:
    """A copy of ``schema`` without no-op keywords and formats llguidance does not know (annotations);
    ``problems`` gets ``(keyword, JSON pointer)`` for every assertion llguidance cannot enforce."""
    if not isinstance(schema, Mapping):
        return schema
    s = dict(schema)
    for key in [k for k in s if k in _UNSUPPORTED]:
        if _no_op(key, s):
            del s[key]
    # uniqueItems (e.g. a set[str] parameter) is checked after decoding, not by the grammar: a tool call that
    # repeats an item is refused with the reason like any invalid call (qwen._schema.check)
    s.pop("uniqueItems", None)
    fmt = s.get("format")
    if isinstance(fmt, str) and fmt not in _FORMAT_MIN_CHARS:
        del s["format"]
    problems.extend((key, _pointer(path)) for key in s if key in _UNSUPPORTED)
    for key in _SUB_MAPS:
        if isinstance(s.get(key), Mapping):
            s[key] = {k: _sanitize(v, (*path, key, k), problems) for k, v in s[key].items()}
    for key in _SUB_LISTS:
        if isinstance(s.get(key), list):
            s[key] = [_sanitize(v, (*path, key, str(i)), problems) for i, v in enumerate(s[key])]
    for key in _SUB_ONE:
        if isinstance(s.get(key), list):  # draft-07 tuple "items"
            s[key] = [_sanitize(v, (*path, key, str(i)), problems) for i, v in enumerate(s[key])]
        elif isinstance(s.get(key), Mapping):
            s[key] = _sanitize(s[key], (*path, key), problems)
    return s


def _keyword_paths(schema: Any, keyword: str, path: tuple[str, ...] = ()) -> list[str]:
    """JSON pointers of the (sub)schemas of ``schema`` that use ``keyword``."""
    if not isinstance(schema, Mapping):
        return []
    found = [_pointer(path)] if keyword in schema else []
    for key in _SUB_MAPS:
        if isinstance(schema.get(key), Mapping):
            for name, sub in schema[key].items():
                found += _keyword_paths(sub, keyword, (*path, key, name))
    for key in (*_SUB_LISTS, *_SUB_ONE):
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                found += _keyword_paths(sub, keyword, (*path, key, str(i)))
        elif isinstance(schema.get(key), Mapping):
            found += _keyword_paths(schema[key], keyword, (*path, key))
    return found


def check_schema(schema: Mapping[str, Any], what: str) -> dict[str, Any]:
    """``schema`` ready for llguidance: annotations it refuses (unknown ``format`` values, no-op keywords) are
    dropped (``uniqueItems`` too: checked after decoding); a keyword it cannot enforce (``not``, ``contains``,
    ``if``/``then``/``else``, ``dependentRequired``, ...) raises ``ModelRequestError`` naming each and where (a
    JSON pointer), since the constrained output could otherwise violate the schema. ``what`` names the schema in
    the message."""
    problems: list[tuple[str, str]] = []
    clean = _sanitize(schema, (), problems)
    if problems:
        listed = ", ".join(f"{key} at {where}" for key, where in problems[:8])
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise ModelRequestError(
            f"{what} uses JSON-schema keywords that constrained decoding cannot enforce: {listed}{more}",
            hint="remove them or express the constraint with supported keywords (type, enum/const, anyOf, "
            "properties/required, minimum/maximum, minLength/maxLength/pattern, minItems/maxItems), and check "
            "what the model returns yourself",
        )
    return clean


@functools.lru_cache(maxsize=256)
def _compile_error(schema_json: str) -> str:
    """llguidance's error for a ``%json`` rule of ``schema_json`` (a JSON text with its ``x-guidance`` options);
    ``""`` when it compiles, or when llguidance is not installed (a remote server then checks it)."""
    try:
        import llguidance
    except ImportError:  # pragma: no cover - the `local` extra is not installed
        return ""
    err = llguidance.LLMatcher.validate_grammar("%llguidance {}\nstart: value\nvalue: %json " + schema_json)
    if not err:
        return ""
    marker = "failed to compile JSON schema: "
    text = err.split(marker, 1)[1] if marker in err else err
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not re.match(r"^\s*(\d+\s*\||\^)", ln)]
    return " ".join(lines)


def _rule_errors(schema: Mapping[str, Any], string_cap: int, limits: GrammarLimits) -> tuple[str, str, str]:
    """(rule text of ``schema`` bounded by ``string_cap``/``limits``, llguidance's error for it, llguidance's error
    for ``schema`` unbounded): errors are ``""`` when it compiles (cached, so checking twice costs nothing)."""
    rule = _json_rule(bound_schema(schema, string_cap, limits))
    err = _compile_error(rule[len("%json ") :])
    own = _compile_error(json.dumps({**schema, "x-guidance": _JSON_OPTS}, ensure_ascii=False)) if err else ""
    return rule, err, own


def _fits_budget(schema: Mapping[str, Any], string_cap: int, limits: GrammarLimits) -> bool:
    """False when ``schema`` compiles but not once bounded by ``string_cap``/``limits`` (the budget is too small)."""
    _, err, own = _rule_errors(schema, string_cap, limits)
    return not err or bool(own)


def _checked_rule(schema: Mapping[str, Any], string_cap: int, limits: GrammarLimits, what: str, budget: int) -> str:
    """``%json`` rule text of ``schema`` (passed through :func:`check_schema`) bounded by ``string_cap``/``limits``.

    ``ModelRequestError`` when llguidance refuses it: blaming the budget when the schema itself compiles (the bounds
    made it unsatisfiable), else quoting llguidance on the schema (``what`` names it)."""
    rule, err, own = _rule_errors(schema, string_cap, limits)
    if not err:
        return rule
    if not own:
        raise ModelRequestError(
            f"max_tokens={limits.max_tokens} is too small for {what}: bounded to finish within about {budget} "
            f"tokens (strings of at most {string_cap} characters, at most {limits.max_array_items} items per "
            f"array or map), the schema cannot be satisfied ({err})",
            hint="raise max_tokens (the request's or the model's default); the schema itself is fine",
        )
    hint = None
    if "oneOf" in own:
        where = ", ".join(_keyword_paths(schema, "oneOf")[:8])
        own = f"oneOf (at {where}) has alternatives that may overlap, which constrained decoding cannot enforce"
        hint = "make the alternatives disjoint (e.g. a property with a different const in each) or use anyOf"
    raise ModelRequestError(f"{what} cannot be enforced by constrained decoding: {own}", hint=hint)


# ---------------------------------------------------------------------------------------------------------------
# schema bounding and worst-case token cost
# ---------------------------------------------------------------------------------------------------------------


def _types(schema: Mapping[str, Any]) -> list[str]:
    t = schema.get("type")
    if isinstance(t, list):
        return [str(x) for x in t]
    return [t] if isinstance(t, str) else []


def _regex_parse(pattern: str) -> Any:
    """Python's parse tree of ``pattern``; ``None`` when Python cannot parse it (ECMA-262 syntax such as
    ``\\p{L}``), which leaves the pattern's needs unknown."""
    from re import _parser as sre_parse  # type: ignore[attr-defined]

    try:
        return sre_parse.parse(pattern)
    except Exception:  # re.error, OverflowError, RecursionError, ...
        return None


@functools.lru_cache(maxsize=1024)
def _pattern_min_chars(pattern: str) -> int:
    """Fewest characters a string matching ``pattern`` has (0 when Python cannot parse the pattern)."""
    tree = _regex_parse(pattern)
    return int(tree.getwidth()[0]) if tree is not None else 0


def _string_need(schema: Mapping[str, Any]) -> int:
    """Fewest characters a string of ``schema`` needs (minLength, pattern, format): its cap never goes below."""
    need = int(schema.get("minLength", 0))
    if isinstance(schema.get("pattern"), str):
        need = max(need, _pattern_min_chars(schema["pattern"]))
    return max(need, _FORMAT_MIN_CHARS.get(str(schema.get("format")), 0))


def _bound_quantifiers(regex: str, k: int) -> str | None:
    """``regex`` with ``*``, ``+`` and ``{n,}`` bounded to at most ``k`` more repetitions; ``None`` when it holds an
    anchor (``^``/``$``) that is not at an end (llguidance supports anchors only there)."""
    out: list[str] = []
    i, n = 0, len(regex)
    while i < n:
        c = regex[i]
        if c == "\\":
            out.append(regex[i : i + 2])
            i += 2
            continue
        if c == "[":  # a class, through its closing bracket
            j = i + 1
            j += regex[j : j + 1] == "^"
            j += regex[j : j + 1] == "]"
            while j < n and regex[j] != "]":
                j += 2 if regex[j] == "\\" else 1
            out.append(regex[i : j + 1])
            i = j + 1
            continue
        if c in "^$":
            return None
        m = re.match(r"\{(\d+),\}", regex[i:]) if c == "{" else None
        if m:
            out.append(f"{{{m[1]},{int(m[1]) + k}}}")
            i += m.end()
            continue
        out.append({"*": f"{{0,{k}}}", "+": f"{{1,{k}}}"}.get(c, c))
        i += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def _bounded_key_pattern(pattern: str, k: int) -> str:
    """A regex matching only keys that ``pattern`` matches (JSON Schema patterns match anywhere in a key), of a
    bounded length (llguidance has no ``propertyNames``, and a key of unbounded length might never end):
    ``pattern`` itself when it is bounded already or cannot be rewritten."""
    from re import _constants as sre  # type: ignore[attr-defined]

    tree = _regex_parse(pattern)
    if tree is None:
        return pattern
    data = list(tree.data)
    start = data[:1] == [(sre.AT, sre.AT_BEGINNING)] and pattern.startswith("^")
    end = data[-1:] == [(sre.AT, sre.AT_END)] and pattern.endswith("$")
    if start and end and tree.getwidth()[1] < sre.MAXREPEAT:
        return pattern
    core = _bound_quantifiers(pattern[int(start) : len(pattern) - int(end)], k)
    if core is None:
        return pattern
    bounded = "^" + ("" if start else f".{{0,{k}}}") + f"(?:{core})" + ("" if end else f".{{0,{k}}}") + "$"
    check = _regex_parse(bounded)
    return bounded if check is not None and check.getwidth()[1] < sre.MAXREPEAT else pattern


def _key_matches(key: str, patterns: Sequence[str]) -> bool:
    for p in patterns:
        try:
            if re.search(p, key):
                return True
        except re.error:
            return True  # cannot tell: assume it does
    return False


def bound_schema(schema: Mapping[str, Any], string_cap: int, limits: GrammarLimits) -> dict[str, Any]:
    """A copy of ``schema`` with every unbounded size bounded (see module docstring)."""

    def walk(s: Any) -> Any:
        if not isinstance(s, Mapping):
            return s
        s = dict(s)
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(s.get(key), list):
                s[key] = [walk(x) for x in s[key]]
        for key in ("$defs", "definitions", "properties", "patternProperties"):
            if isinstance(s.get(key), Mapping):
                s[key] = {k: walk(v) for k, v in s[key].items()}
        types = _types(s)
        if len(types) > 1:
            rest = {k: v for k, v in s.items() if k != "type"}
            return walk({"anyOf": [{**rest, "type": t} for t in types]})
        if not types and not any(k in s for k in ("anyOf", "oneOf", "allOf", "$ref", "enum", "const", "properties")):
            return {**{k: v for k, v in s.items() if k in ("title", "description")}, **walk(_ANY_SCALAR)}
        t = types[0] if types else ("object" if "properties" in s else None)
        if t == "string" and "enum" not in s and "const" not in s:
            cap = max(string_cap, _string_need(s))  # a pattern/format/minLength is never cut below what it needs
            s["maxLength"] = min(int(s["maxLength"]), cap) if "maxLength" in s else cap
        elif t == "integer":
            s["minimum"] = max(math.ceil(s.get("minimum", -_INT_ABS_MAX)), -_INT_ABS_MAX)
            s["maximum"] = min(math.floor(s.get("maximum", _INT_ABS_MAX)), _INT_ABS_MAX)
        elif t == "number":
            s["minimum"] = max(float(s.get("minimum", -_NUM_ABS_MAX)), -_NUM_ABS_MAX)
            s["maximum"] = min(float(s.get("maximum", _NUM_ABS_MAX)), _NUM_ABS_MAX)
            s.setdefault("multipleOf", _NUM_STEP)
        elif t == "array":
            n = max(limits.max_array_items, int(s.get("minItems", 0)))
            s["maxItems"] = min(int(s["maxItems"]), n) if "maxItems" in s else n
            items, key = s.get("items"), "items"
            if isinstance(items, list):  # draft-07 tuple (llguidance reads it under every $schema): positions
                s["items"] = [walk(x) for x in items]  # typed by "items", the rest by "additionalItems"
                items, key = s.get("additionalItems"), "additionalItems"
            else:
                s.pop("additionalItems", None)  # means nothing without a tuple "items"
            s[key] = False if items is False else walk(items if isinstance(items, Mapping) else _ANY_SCALAR)
        elif t == "object":
            bound_object(s)
        return s

    def bound_object(s: dict[str, Any]) -> None:
        extra = s.get("additionalProperties")
        props = s.get("properties") if isinstance(s.get("properties"), Mapping) else {}
        own = s.get("patternProperties") if isinstance(s.get("patternProperties"), Mapping) else {}
        required = list(dict.fromkeys(k for k in s.get("required", []) if isinstance(k, str)))
        need = max(int(s.get("minProperties", 0)), len(required))
        free = "properties" not in s and extra in (None, True, {})
        is_map = bool(own) or (isinstance(extra, Mapping) and bool(extra)) or free
        value = walk(extra) if isinstance(extra, Mapping) and extra else walk(_ANY_SCALAR)
        if own:  # the schema's own patterns (kept; llguidance needs them disjoint, so no catch-all joins them)
            s["patternProperties"] = {_bounded_key_pattern(p, string_cap): v for p, v in own.items()}
        elif is_map:  # keys of a map are bounded through patternProperties (llguidance has no propertyNames)
            s["patternProperties"] = {f"^.{{0,{string_cap}}}$": value}
        if extra is not False:  # a required key the schema leaves to additionalProperties: declared, so it fits
            missing = [k for k in required if k not in props and not _key_matches(k, list(own))]
            if missing:
                s["properties"] = {**props, **{k: value for k in missing}}
        s["additionalProperties"] = False
        if is_map:
            n = max(len(props) + limits.max_array_items, need)  # never below what required/minProperties need
            s["maxProperties"] = min(int(s["maxProperties"]), n) if "maxProperties" in s else n

    out = walk(copy.deepcopy(dict(schema)))
    return out


def _cost(schema: Any, defs: Mapping[str, Any], string_cap: int, limits: GrammarLimits, depth: int = 0) -> int:
    """Worst-case number of tokens of a JSON value of ``schema`` (one token per character/digit)."""
    if not isinstance(schema, Mapping) or depth > 8:
        return 64
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return _cost(defs.get(name, {}), defs, string_cap, limits, depth + 1)
    if "const" in schema:
        return len(json.dumps(schema["const"], ensure_ascii=False)) + 1
    if "enum" in schema:
        return max((len(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]), default=1) + 1
    alts = [x for k in ("anyOf", "oneOf") for x in schema.get(k, [])]
    if alts:
        return max(_cost(a, defs, string_cap, limits, depth + 1) for a in alts)
    if schema.get("allOf"):
        return sum(_cost(a, defs, string_cap, limits, depth + 1) for a in schema["allOf"])
    t = (_types(schema) or ["object" if "properties" in schema else "any"])[0]
    if t == "string":
        return max(min(int(schema.get("maxLength", string_cap)), string_cap), _string_need(schema)) + 2
    if t in ("integer", "number"):
        lo = abs(float(schema.get("minimum", -_INT_ABS_MAX)))
        hi = abs(float(schema.get("maximum", _INT_ABS_MAX)))
        digits = len(str(int(min(max(lo, hi), _INT_ABS_MAX))))
        return digits + 2 + (6 if t == "number" else 0)  # sign, digits, ".dddd" (Qwen: one token per digit)
    if t in ("boolean", "null"):
        return 2
    if t == "array":
        items = schema.get("items", _ANY_SCALAR)
        prefix = items if isinstance(items, list) else schema.get("prefixItems") or []
        rest = schema.get("additionalItems", _ANY_SCALAR) if isinstance(items, list) else items
        n = max(limits.max_array_items, int(schema.get("minItems", 0)))
        total = 2 + sum(_cost(p, defs, string_cap, limits, depth + 1) + 1 for p in prefix[:n])
        if rest is not False and n > len(prefix):
            total += (n - len(prefix)) * (_cost(rest, defs, string_cap, limits, depth + 1) + 1)
        return total
    if t == "object":
        total = 2
        props = schema.get("properties") or {}
        for key, sub in props.items():
            total += len(key) // 2 + 4 + _cost(sub, defs, string_cap, limits, depth + 1)
        extra = schema.get("additionalProperties")
        own = schema.get("patternProperties") or {}
        if own or isinstance(extra, Mapping) or extra is True or "properties" not in schema:
            values = [v for v in [*own.values(), extra] if isinstance(v, Mapping) and v]
            value = max((_cost(v, defs, string_cap, limits, depth + 1) for v in values), default=0)
            key = 3 * string_cap if own else string_cap  # a rewritten key pattern: bounded core and affixes
            n = max(limits.max_array_items, int(schema.get("minProperties", 0)) - len(props))
            total += n * (key + 6 + max(value, string_cap + 2, 24))
        return total
    return max(string_cap, 24) + 2


def _fit(schema: Mapping[str, Any], budget: int, limits: GrammarLimits) -> tuple[int, GrammarLimits]:
    """(string cap, limits) that fit ``schema`` in ``budget`` tokens: arrays/maps shrink (to their minItems at
    least) before strings fall to ``min_string_chars``."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    while limits.max_array_items > 1 and _cost(schema, defs, limits.min_string_chars, limits) > budget:
        limits = dataclasses.replace(limits, max_array_items=limits.max_array_items // 2)
    return _string_cap(schema, budget, limits), limits


def _string_cap(schema: Mapping[str, Any], budget: int, limits: GrammarLimits) -> int:
    """Largest per-string character cap such that the worst case of ``schema`` fits in ``budget`` tokens."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    lo = _cost(schema, defs, 0, limits)
    slope = max(1, _cost(schema, defs, 1, limits) - lo)
    cap = (budget - lo) // slope
    return int(max(limits.min_string_chars, min(limits.max_string_chars, cap)))


# ---------------------------------------------------------------------------------------------------------------
# grammar text (llguidance's Lark dialect)
# ---------------------------------------------------------------------------------------------------------------


def _lit(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_rule(schema: Mapping[str, Any]) -> str:
    return "%json " + json.dumps({**schema, "x-guidance": _JSON_OPTS}, ensure_ascii=False)


def _think_prefix(limits: GrammarLimits, think_ids: tuple[int, int] | None) -> tuple[str, str]:
    if limits.think_chars <= 0 or think_ids is None:
        return "", ""
    rules = f'think: <[{think_ids[0]}]> /(?s:.{{0,{limits.think_chars}}})/ <[{think_ids[1]}]> "\\n\\n"\n'
    return "think? ", rules


def tool_call_grammar(
    tools: Sequence[Mapping[str, Any]],
    *,
    choice: str = "required",
    limits: GrammarLimits = GrammarLimits(),
    tool_call_ids: tuple[int, int] = (151657, 151658),
    think_ids: tuple[int, int] | None = None,
    lazy: bool = False,
    alt_schema: Mapping[str, Any] | None = None,
) -> str:
    """Lark grammar for one or more ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` blocks.

    ``choice``: ``"required"``/``"auto"`` (any tool, 1..max_calls calls) or a tool name (exactly one call of it).
    ``lazy=True``: the grammar starts *after* an already emitted ``<tool_call>`` token (used by ``auto``).
    ``alt_schema``: instead of calls, the completion may be one JSON value of this schema (an agent's output type).
    """
    funcs = [t.get("function", t) for t in tools]
    if choice not in ("required", "auto"):
        funcs = [f for f in funcs if f.get("name") == choice]
        if not funcs:
            raise ModelRequestError(
                f"tool_choice names tool {choice!r}, which is not among the request's tools",
                hint="pass one of: " + ", ".join(repr(t.get("function", t).get("name")) for t in tools),
            )
    if not funcs:
        raise ModelRequestError("tool_choice requires a call but the request has no tools", hint="add tools")
    max_calls = 1 if choice not in ("required", "auto") else max(1, limits.max_calls)
    reserve = limits.think_chars + 8 if think_ids else 8
    budget = max(32, limits.max_tokens - reserve)
    params = [_args_schema(f) for f in funcs]
    # fewer calls when a single call would not fit with a useful string cap
    while max_calls > 1:
        per_call = budget // max_calls
        if all(_fit(p, per_call - 24 - len(f["name"]), limits)[0] > 32 for f, p in zip(funcs, params, strict=True)):
            break
        max_calls -= 1
    # ... or when a call's schema, bounded to its share of the budget, cannot be satisfied
    while max_calls > 1:
        if all(_args_fit(f, p, budget // max_calls, limits) for f, p in zip(funcs, params, strict=True)):
            break
        max_calls -= 1
    per_call = budget // max_calls
    args = [_args_rule(f, p, per_call, limits) for f, p in zip(funcs, params, strict=True)]
    open_id, close_id = tool_call_ids
    lines: list[str] = []
    bodies = []
    for i, f in enumerate(funcs):
        head = _lit('\n{"name": ' + json.dumps(f["name"], ensure_ascii=False) + ', "arguments": ')
        lines.append(f"body{i}: {head} args{i} {_lit('}' + chr(10))} <[{close_id}]>")
        lines.append(f"args{i}: {args[i]}")
        bodies.append(f"body{i}")
    lines.append("body: " + " | ".join(bodies))
    lines.append(f"call: <[{open_id}]> body")
    more = f'("\\n" call){{0,{max_calls - 1}}}' if max_calls > 1 else ""
    prefix, think_rules = _think_prefix(limits, think_ids)
    if lazy:
        start = f"start: body {more}"
    elif alt_schema is not None:
        alt = check_schema(alt_schema, _OUTPUT_SCHEMA)
        cap, lim = _fit(alt, budget, limits)
        lines.append(f"value: {_checked_rule(alt, cap, lim, _OUTPUT_SCHEMA, budget)}")
        start = f"start: {prefix}(call {more} | value)"
    else:
        start = f"start: {prefix}call {more}"
    return "%llguidance {}\n" + start.rstrip() + "\n" + "\n".join(lines) + "\n" + think_rules


def _args_rule(func: Mapping[str, Any], params: Mapping[str, Any], per_call: int, limits: GrammarLimits) -> str:
    """The ``%json`` rule of one call's arguments, bounded to ``per_call`` tokens for the whole call."""
    budget = per_call - 24 - len(func["name"])
    cap, lim = _fit(params, budget, limits)
    return _checked_rule(params, cap, lim, f"the parameters schema of tool {func['name']!r}", budget)


def _args_fit(func: Mapping[str, Any], params: Mapping[str, Any], per_call: int, limits: GrammarLimits) -> bool:
    return _fits_budget(params, *_fit(params, per_call - 24 - len(func["name"]), limits))


def _xml_value(
    name: str, schema: Any, defs: Mapping[str, Any], cap: int, limits: GrammarLimits, what: str, budget: int
) -> tuple[str, str | None]:
    """(grammar expression, terminal definition or None) for one Qwen3-Coder parameter value *including* its
    ``</parameter>`` terminator. A string value and its terminator form one lexeme, so the value may hold
    newlines without the lexer ending it early."""
    end = _lit("\n</parameter>\n")
    if isinstance(schema, Mapping) and "$ref" in schema:
        schema = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
    if not isinstance(schema, Mapping):
        schema = {}
    alts = [a for a in schema.get("anyOf", schema.get("oneOf", [])) if isinstance(a, Mapping)]
    non_null = [a for a in alts if a.get("type") != "null"]
    if alts and len(non_null) == 1:
        schema = non_null[0]
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        texts = [v if isinstance(v, str) else json.dumps(v) for v in values]
        return "(" + " | ".join(_lit(t) for t in texts) + ") " + end, None
    types = _types(schema)
    if types == ["string"] or not (types or alts):
        n = min(int(schema.get("maxLength", cap)), cap)
        term = "XV_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        return term, f"{term}: /(?s:[^<]|<[^\\/<]){{0,{n}}}\\n<\\/parameter>\\n/"
    rule = _checked_rule({**schema, "$defs": dict(defs)} if defs else schema, cap, limits, what, budget)
    return rule + " " + end, None


def xml_tool_call_grammar(
    tools: Sequence[Mapping[str, Any]],
    *,
    choice: str = "required",
    limits: GrammarLimits = GrammarLimits(),
    tool_call_ids: tuple[int, int] = (151657, 151658),
    lazy: bool = False,
) -> str:
    """Lark grammar for Qwen3-Coder calls: ``<tool_call>\n<function=NAME>\n<parameter=P>\nvalue\n</parameter>\n
    ...</function>\n</tool_call>``; values are plain text typed by the schema (strings may not contain ``</``)."""
    funcs = [t.get("function", t) for t in tools]
    if choice not in ("required", "auto"):
        funcs = [f for f in funcs if f.get("name") == choice]
    if not funcs:
        raise ModelRequestError(f"tool_choice {choice!r} matches none of the request's tools")
    max_calls = 1 if choice not in ("required", "auto") else max(1, limits.max_calls)
    budget = max(32, limits.max_tokens - 8)
    while max_calls > 1 and budget // max_calls < 96:
        max_calls -= 1
    per_call = budget // max_calls
    open_id, close_id = tool_call_ids
    lines, bodies, terms = [], [], []
    for i, f in enumerate(funcs):
        params = _args_schema(f)
        defs = {**params.get("definitions", {}), **params.get("$defs", {})}
        cap, lim = _fit(params, per_call - 24 - len(f["name"]), limits)
        required = set(params.get("required", []))
        parts = []
        for j, (pname, psch) in enumerate((params.get("properties") or {}).items()):
            rule = f"p{i}_{j}"
            what = f"parameter {pname!r} of tool {f['name']!r}"
            value, term = _xml_value(f"{i}_{j}", psch, defs, cap, lim, what, per_call - 24 - len(f["name"]))
            if term is not None:
                terms.append(term)
            lines.append(f"{rule}: {_lit('<parameter=' + pname + '>' + chr(10))} {value}")
            parts.append(rule if pname in required else f"{rule}?")
        head = _lit("\n<function=" + f["name"] + ">\n")
        lines.append(f"body{i}: {head} {' '.join(parts)} {_lit('</function>' + chr(10))} <[{close_id}]>")
        bodies.append(f"body{i}")
    lines.append("body: " + " | ".join(bodies))
    lines.append(f"call: <[{open_id}]> body")
    more = f'("\\n" call){{0,{max_calls - 1}}}' if max_calls > 1 else ""
    start = f"start: body {more}" if lazy else f"start: call {more}"
    return "%llguidance {}\n" + start.rstrip() + "\n" + "\n".join(lines + terms) + "\n"


def _args_schema(func: Mapping[str, Any]) -> dict[str, Any]:
    params = func.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, Mapping):
        raise ModelRequestError(f"tool {func.get('name')!r}: 'parameters' must be a JSON schema object")
    return check_schema(params, f"the parameters schema of tool {func.get('name')!r}")


def json_output_grammar(
    schema: Mapping[str, Any],
    *,
    limits: GrammarLimits = GrammarLimits(),
    think_ids: tuple[int, int] | None = None,
) -> str:
    """Lark grammar for one JSON value of ``schema`` (bounded to finish within ``limits.max_tokens``)."""
    reserve = limits.think_chars + 4 if think_ids else 4
    budget = max(16, limits.max_tokens - reserve)
    schema = check_schema(schema, _OUTPUT_SCHEMA)
    cap, lim = _fit(schema, budget, limits)
    prefix, think_rules = _think_prefix(limits, think_ids)
    rule = _checked_rule(schema, cap, lim, _OUTPUT_SCHEMA, budget)
    return f"%llguidance {{}}\nstart: {prefix}value\nvalue: {rule}\n" + think_rules


# ---------------------------------------------------------------------------------------------------------------
# token constraints
# ---------------------------------------------------------------------------------------------------------------


_POOL: Any = None
_POOL_LOCK = threading.Lock()


def _pool() -> Any:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tq-grammar")
        return _POOL


class LLGuidanceConstraint:
    """``TokenConstraint`` over one llguidance matcher. Cheap per token: the next mask is computed in a worker
    thread (llguidance releases the GIL) right after ``advance`` — i.e. while the engine runs the next forward
    pass — into a reused buffer; ``apply`` then only waits for it and writes ``-inf`` with numpy.

    ``overlap=False`` computes the mask inside ``apply`` instead.
    """

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, eos_id: int, *, overlap: bool = True) -> None:
        import numpy as np

        if matcher.is_error():
            raise ModelRequestError(f"grammar could not be compiled: {matcher.get_error()}")
        self._m = matcher
        self._eos = eos_id
        self._words = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._nbytes = self._words.size * 4
        self._vocab = vocab_size
        self._lanes = np.arange(32, dtype=np.int64)
        self.steps = 0
        self.error: str | None = None
        self._overlap = overlap
        self._finished = matcher.is_stopped()
        self._pending: Any = None
        if overlap and not self._finished:
            self._pending = _pool().submit(self._compute_mask)

    def _compute_mask(self) -> None:
        self._m.unsafe_compute_mask_ptr(self._words.ctypes.data, self._nbytes)

    def apply(self, logits: torch.Tensor) -> None:
        import numpy as np
        import torch

        if self._finished:
            keep = logits[self._eos].clone()
            logits.fill_(float("-inf"))
            logits[self._eos] = keep if torch.isfinite(keep) else 0.0
            return
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        else:
            self._compute_mask()
        words = self._words
        n = logits.shape[0]
        # numpy on a shared view: single-threaded and predictable (torch's small parallel ops stall on a busy CPU)
        lg = logits.numpy() if logits.dtype == torch.float32 and logits.is_contiguous() else None
        nz = np.flatnonzero(words)
        if lg is not None and nz.size <= 128:  # few allowed tokens (structure, enums, numbers): keep just those
            bits = np.unpackbits(words[nz].view(np.uint8).reshape(-1, 4), axis=1, bitorder="little").view(bool)
            ids = (nz[:, None] * 32 + self._lanes)[bits]
            ids = ids[ids < n]
            vals = lg[ids]
            lg.fill(-np.inf)
            lg[ids] = vals
            return
        banned = np.unpackbits(np.invert(words).view(np.uint8), bitorder="little").view(bool)
        if lg is not None:
            lg[banned[:n]] = -np.inf
            if n > banned.shape[0]:
                lg[banned.shape[0] :] = -np.inf
            return
        mask = torch.from_numpy(banned[:n].copy())
        if n > mask.shape[0]:
            logits[mask.shape[0] :] = float("-inf")
            logits = logits[: mask.shape[0]]
        logits.masked_fill_(mask, float("-inf"))

    def advance(self, token_id: int) -> None:
        self.steps += 1
        if self._pending is not None:  # apply() was skipped for this step: settle the matcher first
            pending, self._pending = self._pending, None
            pending.result()
        if self._finished:
            return
        if not self._m.consume_token(int(token_id)) and self.error is None:
            self.error = self._m.get_error() or f"token {token_id} not allowed by the grammar"
            log.warning("constrained decoding left the grammar: %s", self.error)
        self._finished = self._m.is_stopped() or self._m.is_error()
        if self._overlap and not self._finished:
            self._pending = _pool().submit(self._compute_mask)

    def is_finished(self) -> bool:
        return self._finished

    def close(self) -> None:
        """Wait for an in-flight mask computation (the matcher is then safe to drop or reuse)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


class LazyToolCallConstraint:
    """``tool_choice="auto"``: free text until the model emits ``<tool_call>``, then valid calls only.

    ``make_inner(remaining)`` builds the call grammar when the trigger arrives, sized to the tokens left in the
    budget (``budget`` minus what was generated), so the calls still end within ``max_tokens``.
    """

    def __init__(self, make_inner: Any, trigger_id: int, budget: int) -> None:
        self._make = make_inner
        self._trigger = trigger_id
        self._budget = budget
        self._seen = 0
        self._inner: LLGuidanceConstraint | None = None

    def apply(self, logits: torch.Tensor) -> None:
        if self._inner is not None:
            self._inner.apply(logits)

    def advance(self, token_id: int) -> None:
        self._seen += 1
        if self._inner is not None:
            self._inner.advance(token_id)
        elif token_id == self._trigger:
            self._inner = self._make(max(1, self._budget - self._seen))

    def is_finished(self) -> bool:
        return self._inner is not None and self._inner.is_finished()


def _all_added_special(tokenizer_json: str) -> str:
    """Mark every added token special, so that markers (``<tool_call>``, ``<think>``) are produced only where a
    grammar names them by id (``<[151657]>``), never inside free text or JSON strings. Only the small
    ``added_tokens`` array is re-encoded (decoding the whole 5 MB file costs seconds)."""
    key = '"added_tokens":'
    start = tokenizer_json.find(key)
    if start < 0:
        return tokenizer_json
    start = tokenizer_json.index("[", start)
    added, end = json.JSONDecoder().raw_decode(tokenizer_json, start)
    for tok in added:
        tok["special"] = True
    return tokenizer_json[:start] + json.dumps(added, ensure_ascii=False) + tokenizer_json[end:]


class GrammarCompiler:
    """Builds constraints for one tokenizer. Construction costs ~1 s (vocabulary scan): share instances
    with :meth:`for_tokenizer`."""

    _cache: ClassVar[dict[tuple[int, int], tuple[Any, GrammarCompiler]]] = {}  # value keeps the tokenizer alive
    _cache_lock = threading.Lock()

    def __init__(self, tokenizer_json: str, *, vocab_size: int, eos_id: int, special_ids: Mapping[str, int]) -> None:
        import llguidance

        self.ll_tokenizer = llguidance.LLTokenizer(
            _all_added_special(tokenizer_json), n_vocab=vocab_size, eos_token=eos_id
        )
        self.vocab_size = vocab_size
        self.eos_id = eos_id
        self.tool_call_ids = (special_ids["<tool_call>"], special_ids["</tool_call>"])
        think = (special_ids.get("<think>"), special_ids.get("</think>"))
        self.think_ids: tuple[int, int] | None = think if None not in think else None  # type: ignore[assignment]

    @classmethod
    def for_tokenizer(cls, hf_tokenizer: Any, *, vocab_size: int) -> GrammarCompiler:
        """The shared compiler for a Hugging Face fast tokenizer (keyed by identity and vocab size)."""
        key = (id(hf_tokenizer), vocab_size)
        with cls._cache_lock:
            entry = cls._cache.get(key)
            hit = entry[1] if entry is not None else None
            if hit is None:
                ids = {
                    t: hf_tokenizer.convert_tokens_to_ids(t)
                    for t in ("<tool_call>", "</tool_call>", "<think>", "</think>")
                }
                ids = {k: v for k, v in ids.items() if isinstance(v, int) and v != hf_tokenizer.unk_token_id}
                eos = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
                hit = cls(hf_tokenizer.backend_tokenizer.to_str(), vocab_size=vocab_size, eos_id=eos, special_ids=ids)
                cls._cache[key] = (hf_tokenizer, hit)
            return hit

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        import llguidance

        m = llguidance.LLMatcher(self.ll_tokenizer, grammar, log_level=0)
        if m.is_error():
            raise ModelRequestError(f"grammar could not be compiled: {m.get_error()}")
        return m

    def constraint(self, grammar: str) -> LLGuidanceConstraint:
        return LLGuidanceConstraint(self.matcher(grammar), self.vocab_size, self.eos_id)

    def tool_calls(
        self,
        tools: Sequence[Mapping[str, Any]],
        choice: str,
        limits: GrammarLimits,
        alt_schema: Mapping[str, Any] | None = None,
        xml: bool = False,
    ) -> tuple[str, LLGuidanceConstraint | LazyToolCallConstraint]:
        """(grammar text, constraint) for a tool choice: ``required``, a tool name, or ``auto`` (lazy; with
        ``alt_schema``: calls or one JSON value of that schema)."""
        think = self.think_ids if limits.think_chars > 0 else None
        if xml:  # Qwen3-Coder: XML calls (no thinking, no JSON alternative)
            grammar = xml_tool_call_grammar(
                tools, choice=choice, limits=limits, tool_call_ids=self.tool_call_ids, lazy=choice == "auto"
            )
            if choice == "auto":
                self.matcher(grammar)

                def make_xml(remaining: int) -> LLGuidanceConstraint:
                    sized = dataclasses.replace(limits, max_tokens=remaining)
                    ids = self.tool_call_ids
                    return self.constraint(
                        xml_tool_call_grammar(tools, choice="auto", limits=sized, tool_call_ids=ids, lazy=True)
                    )

                return grammar, LazyToolCallConstraint(make_xml, self.tool_call_ids[0], limits.max_tokens)
            return grammar, self.constraint(grammar)
        if choice == "auto" and alt_schema is not None:
            ids = self.tool_call_ids
            grammar = tool_call_grammar(
                tools, choice="auto", limits=limits, tool_call_ids=ids, think_ids=think, alt_schema=alt_schema
            )
            return grammar, self.constraint(grammar)
        if choice == "auto":
            ids = self.tool_call_ids
            grammar = tool_call_grammar(tools, choice="auto", limits=limits, tool_call_ids=ids, lazy=True)
            self.matcher(grammar)  # compile once now so a bad schema fails the request, not the decode loop

            def make(remaining: int) -> LLGuidanceConstraint:
                sized = dataclasses.replace(limits, max_tokens=remaining)
                return self.constraint(
                    tool_call_grammar(tools, choice="auto", limits=sized, tool_call_ids=ids, lazy=True)
                )

            return grammar, LazyToolCallConstraint(make, self.tool_call_ids[0], limits.max_tokens)
        ids = self.tool_call_ids
        grammar = tool_call_grammar(tools, choice=choice, limits=limits, tool_call_ids=ids, think_ids=think)
        return grammar, self.constraint(grammar)

    def json_output(self, schema: Mapping[str, Any], limits: GrammarLimits) -> tuple[str, LLGuidanceConstraint]:
        """(grammar text, constraint) for one JSON value validating against ``schema``."""
        think = self.think_ids if limits.think_chars > 0 else None
        grammar = json_output_grammar(schema, limits=limits, think_ids=think)
        return grammar, self.constraint(grammar)
