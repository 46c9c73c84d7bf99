"""default_sandbox(): engine first, then bubblewrap, else a clear error; never the bare host."""

from __future__ import annotations

import pytest
from tq_agents.sandbox import BwrapSandbox, DockerSandbox, default_sandbox

from tq_agents.errors import SandboxUnavailableError

from ._support import TEST_LIMITS, make_bwrap, make_docker

pytestmark = [pytest.mark.engine, pytest.mark.timeout(60)]


def test_picks_the_engine_when_reachable() -> None:
    make_docker().close()
    sb = default_sandbox(TEST_LIMITS)
    try:
        assert isinstance(sb, DockerSandbox)
        assert sb.run("print('in a container')").stdout == "in a container\n"
    finally:
        sb.close()


def test_falls_back_to_bwrap_without_engine(monkeypatch: pytest.MonkeyPatch, tmp_path, caplog) -> None:
    make_bwrap()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    sb = default_sandbox(TEST_LIMITS)
    assert isinstance(sb, BwrapSandbox)
    assert "trying bubblewrap" in caplog.text
    assert sb.run("print(2 + 2)").stdout == "4\n"


def test_explicit_base_url_must_work(tmp_path) -> None:
    with pytest.raises(SandboxUnavailableError):
        default_sandbox(TEST_LIMITS, base_url=f"unix://{tmp_path}/none.sock")


def test_nothing_available_says_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on PATH
    with pytest.raises(SandboxUnavailableError) as info:
        default_sandbox(TEST_LIMITS)
    text = str(info.value)
    assert "bubblewrap" in text and "podman" in text
