"""A 20-turn workflow whose tool writes a side-effect journal; used by the crash test (parent and child).

Run as a script it executes the workflow with a SQLite store and prints every streamed event as one JSON
line (flushed), so the parent knows exactly which events it had received before it SIGKILLs the child.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys

from tq_agents import Agent, SQLiteRunStore, TextMessage, Workflow, tool
from tq_agents.models.base import ChatRequest
from tq_agents.testing import ScriptedModel, call

TURNS = 20


def build(journal: str, latency: float = 0.0) -> Workflow:
    """Worker loops on itself for TURNS turns; each turn calls `record(step)` once, then answers."""

    @tool
    async def record(step: int) -> str:
        """Record that a step ran (appends one line to the side-effect journal).

        Args:
            step: The step number.
        """
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{step}\n".encode())
        finally:
            os.close(fd)
        await asyncio.sleep(latency)
        return f"recorded {step}"

    def script(req: ChatRequest) -> object:
        last = req.messages[-1]
        if last.role == "tool":  # the tool answered: finish the turn
            step = int(re.findall(r"\d+", last.content or "")[0])
            return f"step {step}"
        prev = int(re.findall(r"\d+", last.content or "0")[0]) if re.findall(r"\d+", last.content or "") else 0
        return call("record", step=prev + 1)

    model = ScriptedModel(default=script, latency=latency)

    def more(m: TextMessage) -> bool:
        return int(m.text.split()[-1]) < TURNS

    return (
        Workflow("crash20", model=model)
        .add_node(Agent("worker", "Count.", tools=[record], remember=False), max_visits=TURNS)
        .add_edge("worker", "worker", condition=more)
        .set_entry("worker")
    )


async def _main(db: str, journal: str, run_id: str) -> None:
    run = build(journal, latency=0.02).start("step 0", store=SQLiteRunStore(db), run_id=run_id)
    async for ev in run.events():
        sys.stdout.write(ev.to_json() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], sys.argv[3]))
