"""@tool: schema, validation errors shown to the model, exceptions and timeouts as values."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field

from tq_agents import Tool, ToolDefinitionError, ToolError, ToolResult, tool

pytestmark = pytest.mark.timeout(60)


@tool
def lookup_order(order_id: str, include_items: bool = False, limit: int = 10) -> dict:
    """Look up an order by id.

    Longer explanation that is not part of the summary.

    Args:
        order_id: The order id, for example "A1001".
        include_items (bool): Also return the order
            lines of the order.
        limit: Maximum number of lines.

    Returns:
        The order.
    """
    return {"id": order_id, "items": ["x"] * min(limit, 2) if include_items else []}


class Address(BaseModel):
    city: str
    zip: Annotated[str, Field(pattern=r"^\d{5}$")]


@tool(name="ship", timeout=5.0)
async def ship_order(
    order_id: Annotated[str, Field(description="Which order to ship.")],
    address: Address,
    speed: Literal["standard", "express"] = "standard",
) -> str:
    """Ship an order to an address."""
    await asyncio.sleep(0)
    return f"shipped {order_id} to {address.city} ({speed})"


def test_schema_is_openai_shaped_with_descriptions() -> None:
    assert isinstance(lookup_order, Tool)
    s = lookup_order.schema
    assert s["type"] == "function"
    fn = s["function"]
    assert fn["name"] == "lookup_order"
    assert fn["description"] == "Look up an order by id."
    params = fn["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["order_id"]
    assert params["properties"]["order_id"] == {"type": "string", "description": 'The order id, for example "A1001".'}
    assert params["properties"]["include_items"]["description"] == "Also return the order lines of the order."
    assert params["properties"]["limit"]["default"] == 10
    assert params["additionalProperties"] is False


def test_options_and_annotated_descriptions() -> None:
    assert ship_order.name == "ship"
    assert ship_order.timeout == 5.0
    props = ship_order.schema["function"]["parameters"]["properties"]
    assert props["order_id"]["description"] == "Which order to ship."
    assert props["speed"]["enum"] == ["standard", "express"]
    assert set(ship_order.schema["function"]["parameters"]["required"]) == {"order_id", "address"}


def test_valid_call_sync_and_async() -> None:
    r = lookup_order.call_sync({"order_id": "A1", "include_items": True, "limit": 1})
    assert isinstance(r, ToolResult) and r.ok
    assert r.value == {"id": "A1", "items": ["x"]}
    assert r.content == '{"id": "A1", "items": ["x"]}'
    r2 = asyncio.run(ship_order.call({"order_id": "B2", "address": {"city": "Oslo", "zip": "01234"}}))
    assert isinstance(r2, ToolResult)
    assert r2.content == "shipped B2 to Oslo (standard)"
    # still callable as the plain function
    assert lookup_order("Z")["id"] == "Z"


def test_invalid_arguments_name_each_field() -> None:
    r = asyncio.run(ship_order.call({"address": {"city": 3, "zip": "abc"}, "speed": "warp", "colour": "red"}))
    assert isinstance(r, ToolError) and not r.ok
    assert r.kind == "invalid_arguments"
    assert set(r.fields) == {"order_id", "address.city", "address.zip", "speed", "colour"}
    assert "missing" in r.fields["order_id"]
    assert "'standard' or 'express'" in r.fields["speed"] and '"warp"' in r.fields["speed"]
    assert "pattern" in r.fields["address.zip"]
    assert "unexpected field" in r.fields["colour"]
    for field in r.fields:
        assert f"`{field}`" in r.content
    assert "tool `ship`" in r.content


def test_non_mapping_arguments() -> None:
    r = lookup_order.call_sync(["A1"])  # type: ignore[arg-type]
    assert isinstance(r, ToolError) and r.kind == "invalid_arguments"
    assert "JSON object" in r.content


def test_exception_becomes_tool_error() -> None:
    @tool
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    r = divide.call_sync({"a": 1, "b": 0})
    assert isinstance(r, ToolError) and r.kind == "exception"
    assert "ZeroDivisionError" in r.content


def test_timeout_becomes_tool_error() -> None:
    @tool(timeout=0.05)
    async def slow() -> str:
        """Sleep a long time."""
        await asyncio.sleep(5)
        return "done"

    r = slow.call_sync({})
    assert isinstance(r, ToolError) and r.kind == "timeout"
    assert "0.05" in r.content
    assert r.duration_s < 2


def test_timeout_error_raised_by_the_tool_is_an_exception_not_a_timeout() -> None:
    """Only the framework's own deadline is kind='timeout'; a TimeoutError from the function is an exception."""

    @tool
    def fetch(url: str) -> str:
        """Fetch a URL (no tool timeout)."""
        raise TimeoutError("read timed out")  # as socket.timeout / an HTTP client's timeout

    @tool(timeout=5)
    async def fetch_async(url: str) -> str:
        """Fetch a URL (5 s tool timeout)."""
        raise TimeoutError("upstream read timed out after 0.1 s")

    @tool(timeout=5)
    def fetch_sync(url: str) -> str:
        """Fetch a URL in a thread (5 s tool timeout)."""
        raise TimeoutError("connect timed out")

    for t, message in ((fetch, "read timed out"), (fetch_async, "after 0.1 s"), (fetch_sync, "connect timed out")):
        r = t.call_sync({"url": "http://x"})  # never raises
        assert isinstance(r, ToolError) and r.kind == "exception", r
        assert r.content.startswith(f"tool `{t.name}` failed: TimeoutError: ")
        assert message in r.content and "timed out after 5" not in r.content
        assert r.duration_s < 2


def test_timeout_of_a_sync_tool_becomes_tool_error() -> None:
    @tool(timeout=0.05)
    def slow() -> str:
        """Sleep in a thread."""
        import time

        time.sleep(0.5)
        return "done"

    r = slow.call_sync({})
    assert isinstance(r, ToolError) and r.kind == "timeout" and "timed out after 0.05 s" in r.content


def test_definition_errors() -> None:
    with pytest.raises(ToolDefinitionError, match="no type annotation"):

        @tool
        def untyped(x) -> None:  # type: ignore[no-untyped-def]
            """x."""

    with pytest.raises(ToolDefinitionError, match=r"\*\*kw"):

        @tool
        def varkw(**kw: int) -> None:
            """x."""

    with pytest.raises(ToolDefinitionError, match="not allowed"):
        tool(name="bad name!")(lambda: None)
