"""A small tolerant JSON reader for what small models write when they mean JSON.

Accepts strict JSON plus: single-quoted strings, bare (identifier) keys, trailing commas, a missing comma
between members, Python literals (``True``/``False``/``None``), raw control characters inside strings,
``//`` and ``/* */`` comments, and (when ``autoclose=True``) objects/arrays left open at the end of the text.
It refuses anything else with a ``LenientJSONError`` whose ``reason`` is written to be shown to the model.

Strict JSON takes the C fast path (``json.JSONDecoder.raw_decode``); the tolerant reader only runs when that
fails. ``repairs`` lists what was tolerated, for diagnostics and tests.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["LenientJSONError", "decode_lenient", "loads_lenient"]

_MAX_DEPTH = 100


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)
_WS = " \t\r\n\ufeff"
_IDENT_START = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$")
_IDENT = _IDENT_START | set("0123456789-")
_LITERALS: dict[str, Any] = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}
_PY_LITERALS = {"True", "False", "None"}
_PY_SIMPLE = {"a": "\a", "v": "\v"}
_PY_ESCAPES: dict[str, re.Pattern[str]] = {
    "x": re.compile(r"x([0-9a-fA-F]{2})"),
    "U": re.compile(r"U([0-9a-fA-F]{8})"),
    "a": re.compile(r"a()"),
    "v": re.compile(r"v()"),
    **{d: re.compile(r"([0-7]{1,3})") for d in "01234567"},
}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NUM_CHARS = set("0123456789+-.eE")
_DQ_SPECIAL = re.compile(r'["\\]')
_SQ_SPECIAL = re.compile(r"['\\]")
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


class LenientJSONError(ValueError):
    """The text is not JSON even by the tolerant rules.

    ``truncated`` is True when the text simply ended too early (an open string, object or array).
    """

    def __init__(self, reason: str, pos: int, *, truncated: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos
        self.truncated = truncated


def _where(text: str, pos: int, base: int = 0) -> str:
    """``line L column C (near ...)``, counted from ``base`` (the start of the value): O(pos - base)."""
    pos = max(base, min(pos, len(text)))
    line = text.count("\n", base, pos) + 1
    col = pos - max(base, text.rfind("\n", base, pos) + 1) + 1
    near = text[pos : pos + 20].replace("\n", "\\n")
    return f"line {line} column {col}" + (f" (near {near!r})" if near else " (at the end)")


class _Reader:
    __slots__ = ("autoclose", "base", "pos", "repairs", "text")

    def __init__(self, text: str, pos: int, autoclose: bool) -> None:
        self.text = text
        self.pos = pos
        self.base = pos
        self.autoclose = autoclose
        self.repairs: list[str] = []

    def fail(self, what: str, pos: int | None = None, *, truncated: bool = False) -> LenientJSONError:
        p = self.pos if pos is None else pos
        return LenientJSONError(f"{what} at {_where(self.text, p, self.base)}", p, truncated=truncated)

    def skip(self) -> None:
        text, n = self.text, len(self.text)
        p = self.pos
        while p < n:
            c = text[p]
            if c in _WS:
                p += 1
            elif c == "/" and text.startswith("//", p):
                e = text.find("\n", p)
                p = n if e < 0 else e + 1
                self.repairs.append("comment")
            elif c == "/" and text.startswith("/*", p):
                e = text.find("*/", p + 2)
                p = n if e < 0 else e + 2
                self.repairs.append("comment")
            else:
                break
        self.pos = p

    def value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise self.fail(f"nested more than {_MAX_DEPTH} levels deep")
        self.skip()
        text = self.text
        if self.pos >= len(text):
            raise self.fail("expected a value but the text ended", truncated=True)
        c = text[self.pos]
        if c == "{":
            return self.obj(depth)
        if c == "[":
            return self.arr(depth)
        if c == '"' or c == "'":
            return self.string()
        if c in "-+.0123456789":
            return self.number()
        if c in _IDENT_START:
            start = self.pos
            word = self.ident()
            if word in _LITERALS:
                if word in _PY_LITERALS:
                    self.repairs.append("python literal")
                return _LITERALS[word]
            raise self.fail(f"unexpected word {word!r} (strings need quotes)", start)
        raise self.fail(f"unexpected character {c!r}")

    def ident(self) -> str:
        text, n, p = self.text, len(self.text), self.pos
        while p < n and text[p] in _IDENT:
            p += 1
        word = text[self.pos : p]
        self.pos = p
        return word

    def string(self) -> str:
        text, n = self.text, len(self.text)
        quote = text[self.pos]
        if quote == "'":
            self.repairs.append("single quotes")
        start = self.pos
        p = self.pos + 1
        out: list[str] = []
        while True:
            # copy the run up to the next quote or backslash in one slice
            m = (_DQ_SPECIAL if quote == '"' else _SQ_SPECIAL).search(text, p)
            if m is None:
                raise self.fail("a string was never closed", start, truncated=True)
            q = b = m.start()
            if text[b] == "\\":
                out.append(text[p:b])
                if b + 1 >= n:
                    raise self.fail("a string was never closed", start, truncated=True)
                e = text[b + 1]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    p = b + 2
                elif e == "u":
                    hexdigits = text[b + 2 : b + 6]
                    if len(hexdigits) < 4 and b + 6 >= n:
                        raise self.fail("a string was never closed", start, truncated=True)
                    if not _HEX4.fullmatch(hexdigits):
                        raise self.fail("bad \\u escape in a string", b)
                    code = int(hexdigits, 16)
                    p = b + 6
                    if 0xD800 <= code < 0xDC00 and text.startswith("\\u", p) and _HEX4.fullmatch(text[p + 2 : p + 6]):
                        low = int(text[p + 2 : p + 6], 16)
                        if 0xDC00 <= low < 0xE000:
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                            p += 6
                    out.append(chr(code) if not 0xD800 <= code < 0xE000 else "\ufffd")
                elif e == "\n":  # line continuation
                    p = b + 2
                elif e in _PY_ESCAPES:  # Python's \xHH, \UHHHHHHHH, octal, \a, \v (from repr() of a value)
                    m = _PY_ESCAPES[e].match(text, b + 1)
                    if m is None:
                        raise self.fail(f"bad \\{e} escape in a string", b)
                    code = int(m.group(1), 8 if e in "01234567" else 16) if m.group(1) else ord(_PY_SIMPLE[e])
                    if code > 0x10FFFF:
                        raise self.fail(f"bad \\{e} escape in a string", b)
                    self.repairs.append("python escape")
                    out.append(chr(code) if not 0xD800 <= code < 0xE000 else "\ufffd")
                    p = m.end()
                else:  # unknown escape (a regex's \d, a Windows path): keep it as written, as Python does
                    self.repairs.append("unknown escape")
                    out.append("\\" + e)
                    p = b + 2
                continue
            out.append(text[p:q])
            self.pos = q + 1
            return "".join(out)

    def number(self) -> int | float:
        text, n, start = self.text, len(self.text), self.pos
        p = start
        while p < n and text[p] in _NUM_CHARS:
            p += 1
        raw = text[start:p]
        self.pos = p
        body = raw[1:] if raw[:1] in "+-" else raw
        try:
            if body and all(ch in "0123456789" for ch in body):
                if len(body) > 1 and body[0] == "0":
                    self.repairs.append("leading zero")
                return int(raw)
            value = float(raw)
        except ValueError:
            raise self.fail(f"bad number {raw!r}", start) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise self.fail(f"number {raw!r} is out of range", start)
        return value

    def close_or_fail(self, what: str, closer: str, start: int) -> None:
        if self.autoclose:
            self.repairs.append(f"added missing {closer!r}")
            return
        raise self.fail(f"{what} opened here was never closed (missing {closer!r})", start, truncated=True)

    def obj(self, depth: int) -> dict[str, Any]:
        start = self.pos
        self.pos += 1
        out: dict[str, Any] = {}
        text = self.text
        expect_member = True
        while True:
            self.skip()
            if self.pos >= len(text):
                self.close_or_fail("an object", "}", start)
                return out
            c = text[self.pos]
            if c == "}":
                self.pos += 1
                return out
            if c == ",":
                if expect_member:
                    if out:
                        self.repairs.append("extra comma")
                    else:
                        raise self.fail("expected a key or '}'")
                self.pos += 1
                expect_member = True
                continue
            if not expect_member:
                self.repairs.append("missing comma")
            if c == '"' or c == "'":
                key = self.string()
            elif c in _IDENT_START or c.isdigit():
                p = self.pos
                while p < len(text) and (text[p] in _IDENT or text[p].isalnum()):
                    p += 1
                key = text[self.pos : p]
                self.pos = p
                self.repairs.append("bare key")
            else:
                raise self.fail("expected a quoted key, ',' or '}'")
            self.skip()
            if self.pos >= len(text):
                self.close_or_fail("an object", "}", start)
                raise self.fail(f"the key {key!r} has no value", truncated=True)
            if text[self.pos] != ":":
                raise self.fail(f"expected ':' after the key {key!r}")
            self.pos += 1
            out[key] = self.value(depth + 1)
            expect_member = False

    def arr(self, depth: int) -> list[Any]:
        start = self.pos
        self.pos += 1
        out: list[Any] = []
        text = self.text
        expect_item = True
        while True:
            self.skip()
            if self.pos >= len(text):
                self.close_or_fail("an array", "]", start)
                return out
            c = text[self.pos]
            if c == "]":
                self.pos += 1
                return out
            if c == ",":
                if expect_item:
                    if out:
                        self.repairs.append("extra comma")
                    else:
                        raise self.fail("expected a value or ']'")
                self.pos += 1
                expect_item = True
                continue
            if not expect_item:
                self.repairs.append("missing comma")
            out.append(self.value(depth + 1))
            expect_item = False


def decode_lenient(
    text: str, pos: int = 0, *, autoclose: bool = False, strict_first: bool = True
) -> tuple[Any, int, list[str]]:
    """Read one JSON-ish value starting at ``pos`` (after optional whitespace).

    Returns ``(value, end, repairs)``: ``end`` is the index just after the value, ``repairs`` what was
    tolerated (empty for strict JSON). Raises ``LenientJSONError`` otherwise; its position words count
    from the value's start. With ``autoclose``, objects and arrays still open at the end of ``text`` are
    closed (an open *string* is always an error). ``strict_first=False`` skips the C fast path, whose
    failures cost O(pos) (worth it deep inside a long text).
    """
    n = len(text)
    while pos < n and text[pos] in _WS:
        pos += 1
    if strict_first:
        try:
            value, end = _STRICT.raw_decode(text, pos)
        except (ValueError, RecursionError):
            pass
        else:
            return value, end, []
    reader = _Reader(text, pos, autoclose)
    value = reader.value(0)
    return value, reader.pos, reader.repairs


def loads_lenient(text: str, *, autoclose: bool = False) -> tuple[Any, list[str]]:
    """Read a whole text as one JSON-ish value; anything but whitespace after it is an error."""
    value, end, repairs = decode_lenient(text, 0, autoclose=autoclose)
    rest = text[end:].strip()
    if rest:
        raise LenientJSONError(f"unexpected text after the value at {_where(text, end)}", end)
    return value, repairs
