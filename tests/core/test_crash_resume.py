"""Crash test: a subprocess runs a 20-turn workflow with a file store and is SIGKILLed at a random turn;
``resume`` finishes it. Checks: every event the parent received is in the log, each turn completed exactly
once, and no tool call recorded before the kill ran twice (side-effect journal)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tq_agents import NodeFinished, RunError, SQLiteRunStore, ToolCallFinished, resume
from tq_agents._record import RunRecord

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from crash_workflow import TURNS, build  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_sigkill_then_resume(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    kill_after = rng.randint(2, 5 * TURNS - 10)  # events received before the kill (a run has ~6/turn)
    db, journal, run_id = str(tmp_path / "runs.sqlite"), str(tmp_path / "journal.txt"), f"crash-{seed}"
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_workflow.py"), db, journal, run_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    received: list[dict] = []
    assert child.stdout is not None
    for line in child.stdout:
        received.append(json.loads(line))
        if len(received) >= kill_after:
            os.kill(child.pid, signal.SIGKILL)
            break
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, f"child ended on its own (rc={child.returncode}); kill earlier"

    store = SQLiteRunStore(db)
    before = RunRecord.load(store, run_id)
    logged = {e.seq: e.kind for e in before.events}
    for ev in received:  # every event the parent had received is durable in the log
        assert logged.get(ev["seq"]) == ev["kind"], f"seed {seed}: received {ev['kind']}#{ev['seq']} missing"
    recorded_steps = [
        e.result["value"].split()[-1] for e in before.events if isinstance(e, ToolCallFinished) and e.result["ok"]
    ]
    assert before.finished is None

    result = asyncio.run(resume(run_id, build(journal), store))
    assert result.status == "completed", result.reason
    assert result.output.text == f"step {TURNS}"  # type: ignore[union-attr]
    assert result.turns == TURNS

    after = RunRecord.load(store, run_id)
    finished = Counter(e.turn_id for e in after.events if isinstance(e, NodeFinished))
    assert sorted(finished) == sorted(f"worker:{i}" for i in range(1, TURNS + 1))
    assert set(finished.values()) == {1}, f"seed {seed}: a turn completed twice: {finished}"

    executed = Counter(Path(journal).read_text().split())
    for step in recorded_steps:  # a tool call recorded before the kill never runs again
        assert executed[step] == 1, f"seed {seed}: recorded step {step} executed {executed[step]} times"
    assert set(executed) == {str(i) for i in range(1, TURNS + 1)}
    assert sum(executed.values()) <= TURNS + 1  # at most the one unrecorded in-flight call ran twice
    store.close()


def test_resume_refuses_a_run_whose_process_still_runs(tmp_path: Path) -> None:
    # `tq resume` while the run goes on in another process would run its turns (and tools) twice and
    # interleave two writers in its log: refused while that process lives; after it is killed, resumed
    db, journal, run_id = str(tmp_path / "runs.sqlite"), str(tmp_path / "journal.txt"), "live"
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_workflow.py"), db, journal, run_id],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for _ in range(6):  # a few events in: the run is under way
            child.stdout.readline()
        store = SQLiteRunStore(db)
        with pytest.raises(RunError) as e:
            asyncio.run(resume(run_id, build(journal), store))
        assert f"still running in process {child.pid} on this host" in str(e.value)
        assert "force=True" in str(e.value.hint)
    finally:
        child.kill()
        child.wait()
    res = asyncio.run(resume(run_id, build(journal), store))
    assert res.status == "completed"
    assert {int(s) for s in Path(journal).read_text().split()} == set(range(1, TURNS + 1))
