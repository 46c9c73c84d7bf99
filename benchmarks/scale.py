"""How the core runtime scales: time at growing sizes, and the growth exponent between the two largest.

Cases (function nodes and ScriptedModel, so only the framework is measured):

* ``resume-rebuild``: a run whose consumer had N inputs waiting; time to rebuild its state from the log
  (``start_resume`` of the finished run).
* ``all-join``: a fan-out of N branches into one ``all`` join; one run, topology included.
* ``replay-fan-out``: N agent branches with random latencies into an ``any`` join; time to replay it.
* ``validate-redirects``: ``validate()`` of a chain of N nodes each redirecting (``on_exhausted``) to the next.
* ``long-loop``: a loop of N turns that never awaits, on a SQLite store; time per turn.

An exponent near 1 is linear, near 2 quadratic. ``--quick`` uses small sizes (seconds), for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tq_agents import Agent, Message, SQLiteRunStore, TextMessage, Workflow, replay
from tq_agents.scheduler import start_resume
from tq_agents.store import MemoryRunStore
from tq_agents.testing import ScriptedModel


def _echo(m: Message) -> Message:
    return TextMessage(text="ok")


def resume_rebuild(n: int) -> float:
    def source(m: Message) -> list[Message]:
        return [TextMessage(text=str(i)) for i in range(n)]

    wf = Workflow("rebuild").add_node("src", source).add_node("sink", _echo).add_edge("src", "sink")
    store = MemoryRunStore()
    res = wf.run_sync("go", store=store)

    async def rebuild() -> float:
        t0 = time.perf_counter()
        start_resume(res.run_id, wf, store)  # a finished run: its state is rebuilt, nothing runs
        return time.perf_counter() - t0

    return asyncio.run(rebuild())


def all_join(n: int) -> float:
    def join(ms: list[Message]) -> Message:
        return TextMessage(text=str(len(ms)))

    wf = Workflow("all").add_node("src", _echo).add_node("j", join).set_entry("src")
    for i in range(n):
        wf.add_node(f"b{i}", _echo).add_edge("src", f"b{i}").add_edge(f"b{i}", "j")
    t0 = time.perf_counter()
    res = wf.run_sync("go", store=MemoryRunStore())
    assert res.status == "completed", res.reason
    return time.perf_counter() - t0


def replay_fan_out(n: int) -> float:
    rng = random.Random(1)
    model = ScriptedModel(default="answer", latency={f"b{i}": rng.random() * 0.02 for i in range(n)})
    wf = Workflow("fan", model=model).add_node("src", _echo).add_node("j", _echo, join="any").set_entry("src")
    for i in range(n):
        wf.add_node(Agent(f"b{i}", "branch", remember=False)).add_edge("src", f"b{i}").add_edge(f"b{i}", "j")
    store = MemoryRunStore()
    res = wf.run_sync("go", store=store)
    t0 = time.perf_counter()
    report = asyncio.run(replay(res.run_id, wf, store))
    assert not report.diverged, report.divergence
    return time.perf_counter() - t0


def validate_redirects(n: int) -> float:
    wf = Workflow("chain")
    for i in range(n):
        wf.add_node(f"n{i}", _echo, max_visits=1, on_exhausted=f"n{i + 1}" if i + 1 < n else None)
    wf.set_entry("n0")
    t0 = time.perf_counter()
    assert wf.problems() == []
    return time.perf_counter() - t0


def long_loop(n: int) -> float:
    def step(m: Message) -> Message:
        k = int(m.text) if m.text.isdigit() else 0  # type: ignore[attr-defined]
        return TextMessage(text=str(k + 1))

    wf = (
        Workflow("loop")
        .add_node("s", step, max_visits=n)
        .add_edge("s", "s", condition=lambda m: int(m.text) < n)  # type: ignore[attr-defined]
        .set_entry("s")
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteRunStore(Path(tmp) / "loop.sqlite")
        t0 = time.perf_counter()
        res = wf.run_sync("go", store=store)
        dt = time.perf_counter() - t0
        store.close()
    assert res.turns == n, res.reason
    return dt


CASES: dict[str, tuple[Callable[[int], float], list[int], list[int]]] = {
    # name: (function, full sizes, quick sizes)
    "resume-rebuild": (resume_rebuild, [1000, 4000, 16000], [500, 2000]),
    "all-join": (all_join, [200, 800, 3200], [100, 400]),
    "replay-fan-out": (replay_fan_out, [200, 800, 1600], [100, 400]),
    "validate-redirects": (validate_redirects, [500, 2000, 8000], [200, 800]),
    "long-loop": (long_loop, [1000, 4000, 16000], [500, 2000]),
}


def main(quick: bool) -> float:
    worst = 0.0
    for name, (fn, full, small) in CASES.items():
        sizes = small if quick else full
        times = [fn(n) for n in sizes]
        (n1, t1), (n2, t2) = list(zip(sizes, times, strict=True))[-2:]
        exponent = math.log(max(t2, 1e-6) / max(t1, 1e-6)) / math.log(n2 / n1)
        worst = max(worst, exponent)
        cells = "  ".join(f"n={n}: {t * 1e3:8.1f} ms" for n, t in zip(sizes, times, strict=True))
        print(f"{name:<19} {cells}  growth exponent {exponent:.2f}")
    print(f"worst growth exponent: {worst:.2f}")
    return worst


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds), for CI")
    main(ap.parse_args().quick)
