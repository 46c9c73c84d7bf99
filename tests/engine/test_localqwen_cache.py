"""Through ``LocalQwen``: an agent's turns reuse the stable system+tools prefix (prefix-cache hit rate)."""

from __future__ import annotations

import asyncio

import pytest

from tq_agents.models.base import ChatMessage, ChatRequest

pytestmark = pytest.mark.timeout(180)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Look up an order by id and return its status and items.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}, "verbose": {"type": "boolean"}},
                "required": ["order_id"],
            },
        },
    }
]
SYSTEM = "You are the support agent of a small shop. Answer briefly, call tools when you need facts. " * 4


def test_agent_turns_hit_the_system_and_tools_prefix(tiny_checkpoint):
    from tq_agents.models._engine import close_all_engines
    from tq_agents.models.local import LocalQwen

    model = LocalQwen(str(tiny_checkpoint), dtype="fp32", max_tokens=4, constrain=False)
    try:
        first = ChatRequest(
            messages=[ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="Where is A-17?")],
            tools=TOOLS,
        )
        prefix_ids = model.prepare(first).token_ids
        asyncio.run(model.complete(first))
        before = model.engine.stats()["cached_prompt_tokens"]
        second = ChatRequest(
            messages=[ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="Cancel B-2 now")],
            tools=TOOLS,
        )
        ids = model.prepare(second).token_ids
        common = next(i for i, (a, b) in enumerate(zip(prefix_ids, ids, strict=False)) if a != b)
        assert common > 100  # system prompt and tool schemas come first in the rendered prompt
        asyncio.run(model.complete(second))
        hit = model.engine.stats()["cached_prompt_tokens"] - before
        assert hit == common
    finally:
        close_all_engines()
