"""Shared helpers for the sandbox and security tests: real engine, real bubblewrap, no mocks.

When the engine or bubblewrap is missing, the tests skip with a logged reason locally, but FAIL when
``CI=true`` or ``TQ_REQUIRE_ENGINE=1`` (there the sandbox must be tested for real).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, SandboxLimits

from tq_agents.errors import SandboxError

log = logging.getLogger("tests.sandbox")

#: Small, fast limits for tests (the attack suite relies on them being tight).
TEST_LIMITS = SandboxLimits(timeout_s=5.0, memory_mb=256, pids=64, work_mb=32, tmp_mb=8, file_mb=16)


def engine_required() -> bool:
    """True in CI (or when asked): a missing engine or bwrap is then a failure, not a skip."""
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("TQ_REQUIRE_ENGINE") == "1"


def unavailable(reason: str) -> None:
    """Fail (CI) or skip with a logged reason (local)."""
    if engine_required():
        pytest.fail(f"{reason} — CI=true/TQ_REQUIRE_ENGINE=1: sandbox tests must run against the real engine", False)
    log.warning("skipping sandbox tests: %s", reason)
    pytest.skip(reason)


def make_docker(limits: SandboxLimits = TEST_LIMITS, **kw: object) -> DockerSandbox:
    """A DockerSandbox on DOCKER_HOST, or fail/skip saying how to start the engine."""
    if not os.environ.get("DOCKER_HOST"):
        unavailable('DOCKER_HOST is not set: run `eval "$(bash scripts/engine.sh start)"; bash sandbox/build_image.sh`')
    try:
        return DockerSandbox(limits, **kw)  # type: ignore[arg-type]
    except SandboxError as e:
        unavailable(f"container engine not usable: {e}")
        raise  # unreachable


def make_bwrap(limits: SandboxLimits = TEST_LIMITS) -> BwrapSandbox:
    """A BwrapSandbox, or fail/skip saying what to install."""
    if not shutil.which("bwrap"):
        unavailable("bubblewrap is not installed: apt-get install bubblewrap")
    sb = BwrapSandbox(limits)
    try:
        probe = sb.run("print('ok')", timeout=10)
    except SandboxError as e:
        unavailable(f"bubblewrap cannot create a sandbox here: {e}")
        raise
    if probe.stdout.strip() != "ok":
        unavailable(f"bubblewrap probe failed: {probe}")
    return sb


def sandbox_fixture(kind: str) -> Iterator[DockerSandbox | BwrapSandbox]:
    """Yield a sandbox of ``kind`` ('docker' or 'bwrap') and close it afterwards."""
    sb = make_docker() if kind == "docker" else make_bwrap()
    try:
        yield sb
    finally:
        sb.close()
