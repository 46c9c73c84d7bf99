"""Orchestration overhead: the same 4-agent chain A→B→C→D in tq-agents and in AutoGen AgentChat's GraphFlow.

Both sides use scripted models (tq: ``ScriptedModel``; AutoGen: autogen-ext's ``ReplayChatCompletionClient``)
so only the framework is measured. Each run is one pass of the chain (4 agent turns); the script runs
``--turns`` agent turns per framework (default 2,000), in interleaved rounds so that machine noise hits both
alike, and prints µs per agent turn for tq with the SQLite store, tq in memory, and AutoGen. The last line is

    ratio autogen/tq-sqlite: X

``--quick`` runs a few hundred turns (seconds). AutoGen comes from the ``bench`` extra
(``pip install -e '.[bench]'``); without it the script says so and exits 2.

Clock: process CPU time by default (``time.process_time``: user + system time of this process, so SQLite's
write syscalls count), which other processes on a busy machine barely disturb; ``--wall`` measures
wall-clock time instead. Both frameworks are measured with the same clock in the same process, in
interleaved rounds (a full garbage collection, untimed, before each round so neither pays for the other's
garbage); the median round is reported.

What tq does per agent turn here, and AutoGen does not: every event (run start/end; per turn NodeStarted,
ModelCallFinished with the full response, MessageEmitted with the typed message, NodeFinished) is encoded
and, for the SQLite store, committed to a WAL file (one group commit per run, process-crash durable) before
``Workflow.run`` returns.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tq_agents import Agent, SQLiteRunStore, Workflow
from tq_agents.store import MemoryRunStore
from tq_agents.testing import ScriptedModel

CHAIN = ["A", "B", "C", "D"]
CLOCK = time.process_time
CLOCK_NAME = "process CPU time (time.process_time)"


def tq_workflow() -> Workflow:
    model = ScriptedModel(default=lambda req: f"{req.agent} done", keep_requests=False)
    wf = Workflow("bench-chain", model=model)
    for name in CHAIN:
        wf.add_node(Agent(name, f"You are agent {name}."))
    for a, b in itertools.pairwise(CHAIN):
        wf.add_edge(a, b)
    return wf.validate()


async def tq_rounds(wf: Workflow, store: object, runs: int) -> float:
    gc.collect()
    t0 = CLOCK()
    for i in range(runs):
        res = await wf.run(f"task {i}", store=store)  # type: ignore[arg-type]
        if res.status != "completed" or res.turns != 4:
            raise SystemExit(f"tq run failed: {res.status} {res.reason}")
    return CLOCK() - t0


def autogen_flow(runs: int):  # type: ignore[no-untyped-def]
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
    from autogen_ext.models.replay import ReplayChatCompletionClient

    agents = [
        AssistantAgent(n, model_client=ReplayChatCompletionClient([f"{n} done"] * runs), system_message=f"You are {n}.")
        for n in CHAIN
    ]
    builder = DiGraphBuilder()
    for a in agents:
        builder.add_node(a)
    for a, b in itertools.pairwise(agents):
        builder.add_edge(a, b)
    return GraphFlow(agents, graph=builder.build())


async def autogen_rounds(flow, runs: int) -> float:  # type: ignore[no-untyped-def]
    """Each run is an independent task, as in tq: the team is reset between runs (reset not timed)."""
    total = 0.0
    gc.collect()
    for i in range(runs):
        t0 = CLOCK()
        res = await flow.run(task=f"task {i}")
        total += CLOCK() - t0
        if len(res.messages) != 5:
            raise SystemExit(f"autogen run produced {len(res.messages)} messages, expected 5")
        await flow.reset()
    return total


async def main(turns: int, rounds: int) -> float:
    logging.disable(logging.CRITICAL)
    try:
        import autogen_agentchat  # noqa: F401
        import autogen_ext.models.replay  # noqa: F401
    except ImportError as e:
        print(f"AutoGen is not installed ({e}); install the bench extra: pip install -e '.[bench]'", file=sys.stderr)
        raise SystemExit(2) from e
    runs_total = max(1, turns // len(CHAIN))
    per_round = max(1, runs_total // rounds)
    wf = tq_workflow()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteRunStore(Path(tmp) / "bench.sqlite")
        memory = MemoryRunStore()
        flow = autogen_flow(per_round * rounds + 5)
        # warm-up (imports, caches) on both sides
        await tq_rounds(wf, sqlite, 5)
        await tq_rounds(wf, memory, 5)
        await autogen_rounds(flow, 5)
        t_sql: list[float] = []
        t_mem: list[float] = []
        t_ag: list[float] = []
        for _ in range(rounds):
            t_ag.append(await autogen_rounds(flow, per_round))
            t_sql.append(await tq_rounds(wf, sqlite, per_round))
            t_mem.append(await tq_rounds(wf, memory, per_round))
        sqlite.close()
    n = per_round * len(CHAIN)
    us = {k: statistics.median(v) / n * 1e6 for k, v in (("sql", t_sql), ("mem", t_mem), ("ag", t_ag))}
    total_turns = n * rounds
    print(f"agent turns per framework: {total_turns} ({rounds} rounds of {per_round} runs of the 4-agent chain)")
    print(f"clock: {CLOCK_NAME}; median of {rounds} interleaved rounds")
    print(f"tq-agents (SQLite store):  {us['sql']:8.1f} us/turn")
    print(f"tq-agents (memory store):  {us['mem']:8.1f} us/turn")
    print(f"AutoGen GraphFlow:         {us['ag']:8.1f} us/turn")
    ratio = us["ag"] / us["sql"]
    print(f"ratio autogen/tq-memory: {us['ag'] / us['mem']:.1f}")
    print(f"ratio autogen/tq-sqlite: {ratio:.1f}")
    return ratio


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=2000, help="agent turns per framework (default 2000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds (median is reported)")
    ap.add_argument("--quick", action="store_true", help="a few hundred turns, for CI")
    ap.add_argument("--cpu", action="store_true", help="measure process CPU time (the default)")
    ap.add_argument("--wall", action="store_true", help="measure wall-clock time instead of process CPU time")
    args = ap.parse_args()
    if args.wall and args.cpu:
        ap.error("--cpu and --wall exclude each other")
    if args.wall:
        CLOCK, CLOCK_NAME = time.perf_counter, "wall-clock time (time.perf_counter)"
    if args.quick:
        args.turns, args.rounds = 400, 3
    asyncio.run(main(args.turns, args.rounds))
