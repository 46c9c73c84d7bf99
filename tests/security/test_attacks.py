"""The attack suite: every attack runs in BOTH sandboxes and must be contained; the host is checked after.

All attacks run once per module (light ones in parallel, resource bombs in a smaller second phase), each
producing a structured `AttackOutcome`; the parametrized tests then assert one outcome each, plus the
host's state (canary files, canary process, listeners, leftover processes, leftover containers).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, ExecResult
from tq_agents.sandbox._docker import LABEL

from ._attacks import ATTACKS, Attack, Verdict, report_of
from ._host import CANARY_ENV, HostContext

pytestmark = [pytest.mark.engine, pytest.mark.timeout(400)]

KINDS = ("docker", "bwrap")


@dataclass
class AttackOutcome:
    """What one attack did in one sandbox, and whether it was contained."""

    attack: str
    sandbox: str
    result: ExecResult | None
    verdict: Verdict
    error: str | None = None


@pytest.fixture(scope="module")
def outcomes(
    attack_docker: DockerSandbox, attack_bwrap: BwrapSandbox, host: HostContext
) -> dict[tuple[str, str], AttackOutcome]:
    boxes = {"docker": attack_docker, "bwrap": attack_bwrap}
    subs = host.substitutions()
    results: dict[tuple[str, str], ExecResult | Exception] = {}

    def one(attack: Attack, kind: str) -> None:
        try:
            results[(attack.name, kind)] = boxes[kind].run(
                attack.render(subs),
                language=attack.language,
                timeout=attack.timeout,  # type: ignore[arg-type]
            )
        except Exception as e:  # a sandbox failure is a failed attack test, reported with the error
            results[(attack.name, kind)] = e

    jobs = [(a, k) for a in ATTACKS for k in KINDS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda j: one(*j), [j for j in jobs if not j[0].heavy]))
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda j: one(*j), [j for j in jobs if j[0].heavy]))
    time.sleep(0.3)

    out: dict[tuple[str, str], AttackOutcome] = {}
    for attack, kind in jobs:
        r = results[(attack.name, kind)]
        if isinstance(r, Exception):
            out[(attack.name, kind)] = AttackOutcome(attack.name, kind, None, Verdict(False, "sandbox error"), repr(r))
        else:
            out[(attack.name, kind)] = AttackOutcome(attack.name, kind, r, attack.check(r, report_of(r), host))
    return out


def test_catalogue_has_at_least_25_attacks() -> None:
    assert len(ATTACKS) >= 25
    assert len({a.name for a in ATTACKS}) == len(ATTACKS)


def test_listeners_are_reachable_from_the_host(host: HostContext) -> None:
    """The network checks can fail: every listener received the host's own probe."""
    assert host.self_check and all(v >= 1 for v in host.self_check.values()), host.self_check
    assert os.environ[CANARY_ENV] == host.canary_value


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.name)
def test_attack_is_contained(
    outcomes: dict[tuple[str, str], AttackOutcome], host: HostContext, attack: Attack, kind: str
) -> None:
    o = outcomes[(attack.name, kind)]
    assert o.error is None, f"sandbox failed: {o.error}"
    assert isinstance(o.result, ExecResult)
    assert o.verdict.contained, f"{attack.name} escaped {kind}: {o.verdict.evidence}\nstderr: {o.result.stderr[-500:]}"
    # The host is unharmed after this attack (checked again, in full, below).
    assert host.files_intact()
    assert host.canary_process_alive()


def test_host_unharmed_after_all_attacks(
    outcomes: dict[tuple[str, str], AttackOutcome], host: HostContext, attack_docker: DockerSandbox
) -> None:
    assert len(outcomes) == 2 * len(ATTACKS)
    assert host.files_intact(), "a canary file changed or a file appeared outside the sandbox"
    assert host.canary_process_alive(), "the host canary process was killed"
    assert host.listener_hits() == {}, host.listener_hits()
    assert host.tagged_processes() == [], "processes survived their sandbox"
    assert host.can_fork()
    attack_docker.flush()
    leftovers = attack_docker._client.containers.list(all=True, filters={"label": f"{LABEL}.owner-pid={os.getpid()}"})
    assert leftovers == [], [c.name for c in leftovers]
