"""Acceptance: an Agent with two tools on LocalQwen over the tiny checkpoint (required calls, typed output)."""

from __future__ import annotations

import pytest

from ._scenario import run_structured_scenario, run_tool_scenario

pytestmark = pytest.mark.timeout(300)


async def test_agent_required_tools_every_call_validates_and_executes(local_qwen):
    rec = await run_tool_scenario(local_qwen, ["add 2 and 3", "shout hello", "do both", "计算 7+8"])
    assert sum(len(r.message.tool_calls) for r in rec.responses) >= 4


async def test_agent_structured_output_validates(local_qwen):
    reports = await run_structured_scenario(local_qwen, n=3)
    assert all(r.title for r in reports)
