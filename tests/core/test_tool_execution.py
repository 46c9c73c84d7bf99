"""Tool.call at run time: results of any type become valid JSON text, never an exception; generators are refused;
a coroutine returned by a sync wrapper is awaited; output and error text are bounded; sync tools run on their own
threads, so tools that time out cannot starve asyncio's default executor."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import functools
import gc
import json
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, field_serializer

from tq_agents import Agent, ToolDefinitionError, ToolError, ToolResult, Workflow, tool
from tq_agents import _tool as tool_module
from tq_agents._tool import format_validation_error, validation_problems
from tq_agents.models.base import ToolCall
from tq_agents.store import MemoryRunStore
from tq_agents.testing import ScriptedModel

pytestmark = pytest.mark.timeout(60)


def _strict_json(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity`` (not JSON, though Python's json accepts them)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def _returning(name: str, make: Callable[[], Any], **options: Any) -> Any:
    def fn(x: int) -> Any:
        return make()

    fn.__name__ = name
    return tool(**options)(fn)


class Thing:
    pass


class WithThing(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    n: int
    t: Thing


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("str broke")

    def __repr__(self) -> str:
        raise RuntimeError("repr broke")


class Stamp(BaseModel):
    a: int
    when: datetime.datetime


@dataclasses.dataclass
class Row:
    a: int
    day: datetime.date


# ---- 1. a result that cannot be converted never makes call() raise --------------------------------------------


def test_model_with_an_arbitrary_type_field_is_a_result_not_an_exception() -> None:
    r = _returning("arb", lambda: WithThing(n=1, t=Thing())).call_sync({"x": 1})
    assert isinstance(r, ToolResult), r
    assert r.value["n"] == 1 and "Thing object" in r.value["t"]
    assert _strict_json(r.content) == r.value


def test_unprintable_result_is_a_bad_result_error_naming_the_tool() -> None:
    r = _returning("unprintable", Unprintable).call_sync({"x": 1})
    assert isinstance(r, ToolError) and r.kind == "bad_result", r
    assert "`unprintable`" in r.content and "Unprintable" in r.content and "str broke" in r.content
    nested = _returning("nested_unprintable", lambda: {"ok": 1, "bad": Unprintable()}).call_sync({"x": 1})
    assert isinstance(nested, ToolResult), nested  # a nested unprintable object becomes a placeholder text
    assert nested.value["ok"] == 1 and "Unprintable" in nested.value["bad"]


def test_result_whose_serializer_raises_is_a_bad_result_error() -> None:
    class Boom(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        u: Unprintable

        @field_serializer("u")
        def _ser(self, u: Unprintable) -> str:
            raise ValueError("serializer broke")

    r = _returning("boom", lambda: Boom(u=Unprintable())).call_sync({"x": 1})
    assert isinstance(r, ToolError) and r.kind == "bad_result", r
    assert "`boom`" in r.content and "serializer broke" in r.content


def test_exception_whose_str_raises_is_still_an_exception_error() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    def fail(x: int) -> int:
        raise Nasty()

    r = tool(fail).call_sync({"x": 1})
    assert isinstance(r, ToolError) and r.kind == "exception" and "Nasty" in r.content, r


def test_run_with_an_unconvertible_result_completes_and_records_the_call() -> None:
    charges: list[int] = []

    @tool
    def charge_card(amount: int) -> WithThing:
        """Charge a card."""
        charges.append(amount)
        return WithThing(n=amount, t=Thing())

    def step(req: Any) -> Any:
        if any(m.role == "tool" for m in req.messages):
            return "charged"
        return ToolCall(id="c1", name="charge_card", arguments={"amount": 5})

    store = MemoryRunStore()
    wf = Workflow("w").add_node(Agent("a", model=ScriptedModel(default=step), tools=[charge_card])).set_entry("a")
    res = wf.run_sync("go", store=store)
    assert res.status == "completed", res
    assert charges == [5]
    finished = [e for e in store.load_events(res.run_id) if e.kind == "ToolCallFinished"]
    assert len(finished) == 1 and finished[0].payload["result"]["ok"] is True


# ---- 2. values become JSON, content is valid JSON text -------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: [Stamp(a=1, when=datetime.datetime(2024, 1, 2))], [{"a": 1, "when": "2024-01-02T00:00:00"}]),
        (lambda: Row(1, datetime.date(2024, 1, 1)), {"a": 1, "day": "2024-01-01"}),
        (lambda: {"when": datetime.datetime(2024, 1, 2, 3, 4, 5)}, {"when": "2024-01-02T03:04:05"}),
        (lambda: datetime.date(2024, 1, 1), "2024-01-01"),
        (lambda: (1, 2), [1, 2]),
        (lambda: {"rows": [Row(2, datetime.date(2024, 2, 2))]}, {"rows": [{"a": 2, "day": "2024-02-02"}]}),
        (lambda: {1: "a"}, {"1": "a"}),
        (lambda: b"abc", "abc"),
        (lambda: float("nan"), "NaN"),
        (lambda: {"x": [float("inf"), float("-inf"), 1.5]}, {"x": ["Infinity", "-Infinity", 1.5]}),
        (lambda: None, None),
    ],
)
def test_results_are_converted_to_json(make: Callable[[], Any], expected: Any) -> None:
    r = _returning("value", make).call_sync({"x": 1})
    assert isinstance(r, ToolResult), r
    assert r.value == expected
    assert _strict_json(r.content) == expected


def test_non_utf8_bytes_are_base64_and_str_results_are_the_text_itself() -> None:
    r = _returning("raw", lambda: b"\x00\xff").call_sync({"x": 1})
    assert isinstance(r, ToolResult) and r.value == "AP8=" and r.content == '"AP8="', r
    s = _returning("text", lambda: 'plain "text"\n').call_sync({"x": 1})
    assert isinstance(s, ToolResult) and s.content == 'plain "text"\n' and s.value == 'plain "text"\n'


def test_top_level_model_content_keeps_its_compact_json() -> None:
    r = _returning("stamp", lambda: Stamp(a=1, when=datetime.datetime(2024, 1, 1))).call_sync({"x": 1})
    assert isinstance(r, ToolResult)
    assert r.content == '{"a":1,"when":"2024-01-01T00:00:00"}'


# ---- 3. generator functions are refused; a coroutine returned by a sync wrapper is awaited --------------------


def test_generator_functions_are_refused_at_definition() -> None:
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    class Counter:
        def __call__(self, n: int) -> Iterator[int]:
            yield from range(n)

    for fn, kwargs, label in (
        (numbers, {}, "'numbers'"),
        (stream, {}, "'stream'"),
        (functools.partial(numbers), {"name": "numbers_p"}, "'numbers_p'"),
        (Counter(), {"name": "counter"}, "'counter'"),
    ):
        with pytest.raises(ToolDefinitionError) as ei:
            tool(fn, **kwargs)  # type: ignore[arg-type]
        text = str(ei.value)
        assert label in text and "generator" in text, text


def test_generator_returned_by_a_wrapper_is_a_bad_result() -> None:
    def numbers(n: int) -> Iterator[int]:
        yield from range(n)

    @functools.wraps(numbers)
    def wrapper(*a: Any, **k: Any) -> Any:
        return numbers(*a, **k)

    r = tool(wrapper).call_sync({"n": 3})
    assert isinstance(r, ToolError) and r.kind == "bad_result" and "generator" in r.content, r


def _logged(f: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(f)
    def w(*a: Any, **k: Any) -> Any:
        return f(*a, **k)

    return w


def test_coroutine_returned_by_a_sync_wrapper_is_awaited() -> None:
    ran: list[str] = []

    @tool
    @_logged
    async def fetch(url: str) -> str:
        """Fetch a page."""
        await asyncio.sleep(0)
        ran.append(url)
        return "page body"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = fetch.call_sync({"url": "http://x"})
        gc.collect()
    assert isinstance(r, ToolResult) and r.content == "page body", r
    assert ran == ["http://x"]
    assert not [w for w in caught if "never awaited" in str(w.message)]


def test_coroutine_returned_by_a_sync_wrapper_obeys_the_timeout() -> None:
    @tool(timeout=0.05)
    @_logged
    async def slow(x: int) -> str:
        await asyncio.sleep(5)
        return "late"

    t0 = time.perf_counter()
    r = slow.call_sync({"x": 1})
    assert isinstance(r, ToolError) and r.kind == "timeout", r
    assert time.perf_counter() - t0 < 2


# ---- 4. output size ------------------------------------------------------------------------------------------


def test_default_output_cap_truncates_with_a_note() -> None:
    cap = tool_module.DEFAULT_MAX_OUTPUT_CHARS
    big = _returning("dump", lambda: "x" * (cap + 12_345))
    assert big.max_output_chars == cap
    r = big.call_sync({"x": 1})
    assert isinstance(r, ToolResult), r
    assert r.truncated is True and r.original_chars == cap + 12_345
    assert r.content.startswith("x" * cap) and r.content.endswith("\n…[truncated: 12345 more characters]")
    assert len(r.content) < cap + 100
    assert r.value is None  # the full text is not kept a second time
    assert len(json.dumps(r.model_dump(mode="json"))) < cap + 500


def test_output_cap_option_and_structured_values() -> None:
    r = _returning("rows", lambda: [{"i": i} for i in range(100)], max_output_chars=50).call_sync({"x": 1})
    assert isinstance(r, ToolResult) and r.truncated and r.value is None
    assert r.content.startswith('[{"i": 0}, {"i": 1}') and "…[truncated: " in r.content
    assert r.original_chars is not None and r.content.endswith(f"[truncated: {r.original_chars - 50} more characters]")
    exact = _returning("exact", lambda: "y" * 50, max_output_chars=50).call_sync({"x": 1})
    assert isinstance(exact, ToolResult) and not exact.truncated and exact.content == "y" * 50
    assert exact.value == "y" * 50 and exact.original_chars is None
    unbounded = _returning("all", lambda: "z" * 200_000, max_output_chars=None).call_sync({"x": 1})
    assert isinstance(unbounded, ToolResult) and not unbounded.truncated and len(unbounded.content) == 200_000


def test_exception_text_is_capped_too() -> None:
    def fail(x: int) -> int:
        raise ValueError("e" * 100_000)

    r = tool(max_output_chars=100)(fail).call_sync({"x": 1})
    assert isinstance(r, ToolError) and r.kind == "exception" and "[truncated: " in r.content
    assert len(r.content) < 200


@pytest.mark.parametrize("bad", [0, -5, True, 1.5, "100", float("inf")])
def test_max_output_chars_option_is_validated(bad: Any) -> None:
    with pytest.raises(ToolDefinitionError) as ei:
        tool(max_output_chars=bad)
    assert "max_output_chars" in str(ei.value)

    def fn(x: int) -> int:
        return x

    with pytest.raises(ToolDefinitionError):
        tool(fn, max_output_chars=bad)


# ---- 5. the invalid-arguments text is bounded ----------------------------------------------------------------


class Line(BaseModel):
    sku: str
    qty: int


def test_invalid_arguments_text_lists_the_first_problems_only() -> None:
    @tool
    def place(lines: list[Line]) -> str:
        return "ok"

    r = place.call_sync({"lines": [{"sku": 1, "qty": "x"} for _ in range(2000)]})
    assert isinstance(r, ToolError) and r.kind == "invalid_arguments"
    assert len(r.fields) == 4000  # the full detail stays available to code
    bullet_lines = [line for line in r.content.splitlines() if line.startswith("- `")]
    assert len(bullet_lines) == 20
    assert "…and 3980 more" in r.content and "4000 invalid fields" in r.content
    assert "Fix the listed fields" in r.content
    assert len(r.content) < 3000, len(r.content)


def test_format_validation_error_limit() -> None:
    class M(BaseModel):
        a: int
        b: int
        c: int

    try:
        M.model_validate({"a": "x", "b": "y", "c": "z"})
    except Exception as e:
        problems = validation_problems(e, M)  # type: ignore[arg-type]
        short = format_validation_error(e, what="w", problems=problems, limit=2)  # type: ignore[arg-type]
        full = format_validation_error(e, what="w", problems=problems, limit=None)  # type: ignore[arg-type]
    assert short.count("\n- `") == 2 and short.endswith("…and 1 more")
    assert full.count("\n- `") == 3 and "more" not in full


# ---- 6. sync tools run on the tools' own threads -------------------------------------------------------------


class SpyExecutor(concurrent.futures.ThreadPoolExecutor):
    """A small default executor that counts what is submitted to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_timed_out_sync_tools_do_not_starve_the_default_executor_or_each_other() -> None:
    finished: list[int] = []

    @tool(timeout=0.05)
    def stuck(i: int) -> str:
        time.sleep(0.5)
        finished.append(i)
        return "late"

    @tool(timeout=0.3)
    def quick(i: int) -> str:
        return threading.current_thread().name

    spy = SpyExecutor()

    async def main() -> tuple[list[ToolResult | ToolError], ToolResult | ToolError, float]:
        asyncio.get_running_loop().set_default_executor(spy)
        n = 4  # more than the default executor's 2 workers
        stuck_results = list(await asyncio.gather(*[stuck.call({"i": i}) for i in range(n)]))
        t0 = time.perf_counter()
        q = await quick.call({"i": 0})
        return stuck_results, q, time.perf_counter() - t0

    try:
        stuck_results, q, elapsed = asyncio.run(main())
    finally:
        spy.shutdown(wait=True)
    assert {getattr(r, "kind", None) for r in stuck_results} == {"timeout"}
    assert isinstance(q, ToolResult), q
    assert q.content.startswith("tq-tool") and elapsed < 0.25
    assert spy.submitted == 0


def test_run_returns_without_waiting_for_a_timed_out_sync_tool() -> None:
    done = threading.Event()

    @tool(timeout=0.05)
    def hang(x: int) -> str:
        time.sleep(0.5)
        done.set()
        return "late"

    t0 = time.perf_counter()
    r = hang.call_sync({"x": 1})
    elapsed = time.perf_counter() - t0
    assert isinstance(r, ToolError) and r.kind == "timeout"
    assert elapsed < 0.35, elapsed  # asyncio.run does not wait for the abandoned thread
    assert done.wait(2)  # ... which runs to its end; its result is discarded


def test_sync_tool_sees_the_callers_context_variables() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    @tool
    def read_var(x: int) -> str:
        return var.get()

    async def main() -> ToolResult | ToolError:
        var.set("set by caller")
        return await read_var.call({"x": 1})

    r = asyncio.run(main())
    assert isinstance(r, ToolResult) and r.content == "set by caller"


def test_import_starts_no_tool_threads() -> None:
    code = (
        "import threading, tq_agents, tq_agents._tool as t\n"
        "assert t._executor is None, t._executor\n"
        "assert not [th for th in threading.enumerate() if th.name.startswith('tq-tool')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_call_sync_inside_a_running_loop_says_what_to_do() -> None:
    from tq_agents import UserError

    @tool
    def echo(x: int) -> int:
        """Echo.

        Args:
            x: A number.
        """
        return x

    assert echo.call_sync({"x": 2}).ok

    async def inside() -> None:
        with pytest.raises(UserError, match=r"call_sync\(\) was called inside a running event loop"):
            echo.call_sync({"x": 1})

    asyncio.run(inside())
