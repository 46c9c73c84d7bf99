"""Fixtures for the attack suite: both real sandboxes (fail in CI when missing) and the host's canaries."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sandbox._support import sandbox_fixture
from tq_agents.sandbox import BwrapSandbox, DockerSandbox

from ._host import HostContext


@pytest.fixture(scope="module")
def attack_docker() -> Iterator[DockerSandbox]:
    yield from sandbox_fixture("docker")  # type: ignore[misc]


@pytest.fixture(scope="module")
def attack_bwrap() -> Iterator[BwrapSandbox]:
    yield from sandbox_fixture("bwrap")  # type: ignore[misc]


@pytest.fixture(scope="module")
def host() -> Iterator[HostContext]:
    ctx = HostContext()
    try:
        ctx.start()
        yield ctx
    finally:
        ctx.stop()
