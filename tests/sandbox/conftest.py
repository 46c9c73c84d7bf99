"""Fixtures: `docker_sandbox`, `bwrap_sandbox` (session-scoped) and `sandbox` (parametrized over both)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox

from ._support import sandbox_fixture


@pytest.fixture(scope="session")
def docker_sandbox() -> Iterator[DockerSandbox]:
    yield from sandbox_fixture("docker")  # type: ignore[misc]


@pytest.fixture(scope="session")
def bwrap_sandbox() -> Iterator[BwrapSandbox]:
    yield from sandbox_fixture("bwrap")  # type: ignore[misc]


@pytest.fixture(params=["docker", "bwrap"])
def sandbox(request: pytest.FixtureRequest) -> DockerSandbox | BwrapSandbox:
    return request.getfixturevalue(f"{request.param}_sandbox")
