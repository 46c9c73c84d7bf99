"""A small runnable workflow on the core runtime, with a scripted model (no weights needed).

    python examples/core_demo.py [--store runs.sqlite]

planner → coder ⇄ reviewer (bounded revise loop) → report, with a tool call, a typed plan and review,
live events, and the final report. Swap ``ScriptedModel`` for a real ``ChatModel`` to run it for real.
"""

from __future__ import annotations

import argparse
import asyncio

from tq_agents import (
    Agent,
    FinalReport,
    MessageEmitted,
    NodeStarted,
    Plan,
    Review,
    RunFinished,
    ToolCallFinished,
    Workflow,
    tool,
)
from tq_agents.testing import ScriptedModel, call


@tool
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count.
    """
    return len(text.split())


def build() -> Workflow:
    model = ScriptedModel(
        {
            "planner": [{"goal": "Summarise the input", "steps": [{"description": "write a one-line summary"}]}],
            "coder": [
                call("word_count", text="tq agents run typed workflows"),
                "Summary (5 words): typed agent workflows, locally.",
                "Summary: tq-agents runs typed multi-agent workflows on a local model.",
            ],
            "reviewer": [
                {"verdict": "revise", "suggested_fix": "name the project"},
                {"verdict": "approve"},
            ],
        }
    )

    def report(review: Review) -> FinalReport:
        return FinalReport(summary="review approved the summary", approved=review.verdict == "approve")

    return (
        Workflow("core-demo", model=model, description="planner → coder ⇄ reviewer → report")
        .add_node(Agent("planner", "Plan the work.", output_type=Plan))
        .add_node(Agent("coder", "Do the step.", tools=[word_count]), max_visits=3)
        .add_node(Agent("reviewer", "Review the work.", output_type=Review))
        .add_node("report", report)
        .add_edge("planner", "coder")
        .add_edge("coder", "reviewer")
        .add_edge("reviewer", "coder", condition=lambda r: r.verdict == "revise", label="revise")
        .add_edge("reviewer", "report", condition=lambda r: r.verdict == "approve", label="approve")
        .set_entry("planner")
    )


async def main(store: str | None) -> int:
    wf = build()
    print(wf.to_mermaid(), end="\n\n")
    run = wf.start("tq agents run typed workflows", store=store)
    async for ev in run.events():
        if isinstance(ev, NodeStarted):
            print(f"▶ {ev.turn_id}")
        elif isinstance(ev, ToolCallFinished):
            print(f"  tool {ev.tool} → {ev.result['content']}")
        elif isinstance(ev, MessageEmitted):
            print(f"  {ev.node}: {ev.message.type_name} {ev.message.to_prompt()[:70]}")
        elif isinstance(ev, RunFinished):
            print(f"■ {ev.status} after {ev.turns} turns")
    result = await run.result()
    print(f"run {result.run_id}: {result.status}; output: {result.output.to_prompt() if result.output else None}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default=":memory:", help="SQLite file for the run log (default: in memory)")
    raise SystemExit(asyncio.run(main(ap.parse_args().store)))
