"""DockerSandbox specifics against the real engine: warm pool, cleanup, error translation, retries."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from tq_agents.sandbox import DockerSandbox
from tq_agents.sandbox._docker import LABEL

from tq_agents.errors import SandboxError, SandboxUnavailableError

from ._support import TEST_LIMITS, make_docker

pytestmark = [pytest.mark.engine, pytest.mark.timeout(120)]


def _our_containers(sb: DockerSandbox) -> list:
    return sb._client.containers.list(all=True, filters={"label": f"{LABEL}.owner-pid={os.getpid()}"})


def test_container_config_is_locked_down(docker_sandbox: DockerSandbox) -> None:
    cfg = docker_sandbox.container_config()
    assert cfg["network_mode"] == "none"
    assert cfg["read_only"] is True
    assert cfg["cap_drop"] == ["ALL"]
    assert cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["user"] == "1000:1000"
    assert cfg["mem_limit"] == cfg["memswap_limit"] == "256m"
    assert cfg["pids_limit"] == 64
    assert "volumes" not in cfg and "mounts" not in cfg
    assert {u["Name"] for u in cfg["ulimits"]} >= {"nofile", "nproc"}
    assert set(cfg["environment"]) == {"PATH", "LANG"}


def test_engine_applies_the_limits(docker_sandbox: DockerSandbox) -> None:
    """Inspect a real container created with the sandbox's config: the engine honoured every limit."""
    c = docker_sandbox._start_container()
    try:
        c.reload()
        hc = c.attrs["HostConfig"]
        assert hc["NetworkMode"] == "none"
        assert hc["ReadonlyRootfs"] is True
        assert hc["Memory"] == 256 << 20
        assert hc["MemorySwap"] == 256 << 20
        assert hc["PidsLimit"] == 64
        assert hc["NanoCpus"] == 1_000_000_000 or hc.get("CpuQuota")
        assert not c.attrs.get("Mounts"), c.attrs.get("Mounts")
        assert c.attrs["Config"]["User"] == "1000:1000"
    finally:
        docker_sandbox._remove(c)


def test_each_container_is_used_once_and_removed(docker_sandbox: DockerSandbox) -> None:
    first = docker_sandbox.run(
        "open('/tmp/marker', 'w').write('1'); import socket; print(open('/proc/self/cgroup').read())"
    )
    second = docker_sandbox.run(
        "import os; print(os.path.exists('/tmp/marker')); print(open('/proc/self/cgroup').read())"
    )
    assert second.stdout.startswith("False\n")
    assert first.stdout != second.stdout.split("\n", 1)[1]  # different cgroup = different container
    docker_sandbox.flush()  # finished containers are removed in the background
    assert _our_containers(docker_sandbox) == []


def test_warm_pool_serves_runs_and_close_removes_it() -> None:
    sb = make_docker(pool_size=2)
    try:
        deadline = time.monotonic() + 30
        while sb._pool.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sb._pool.qsize() == 2
        outs = [sb.run("import os; print(os.path.exists('/tmp/m')); open('/tmp/m','w')").stdout for _ in range(4)]
        assert outs == ["False\n"] * 4  # never a reused container
    finally:
        sb.close()
    assert _our_containers(sb) == []


def test_missing_image_is_a_clear_error() -> None:
    make_docker()  # fail/skip here when there is no engine at all
    with pytest.raises(SandboxError, match="not in the engine") as info:
        DockerSandbox(TEST_LIMITS, image="tq-agents-sandbox:does-not-exist")
    assert "build_image.sh" in str(info.value)


def test_unreachable_engine_is_retried_then_unavailable(tmp_path) -> None:
    t0 = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match=r"cannot reach|failed to connect") as info:
        DockerSandbox(TEST_LIMITS, base_url=f"unix://{tmp_path}/no-engine.sock", connect_attempts=3)
    assert "engine.sh start" in str(info.value)
    assert time.monotonic() - t0 >= 0.2 + 0.4 - 0.05  # two exponential back-offs: the connection was retried


def test_pooled_containers_are_removed_at_exit_without_close() -> None:
    """A program that never calls close() (or dies on an exception) leaves no pooled container behind."""
    probe = make_docker()  # fail/skip here when there is no engine
    script = (
        "import os, sys, time\n"
        "from tq_agents.sandbox import DockerSandbox\n"
        "sb = DockerSandbox(pool_size=2)\n"
        "assert sb.run(\"print('hi')\").stdout == 'hi\\n'\n"
        "deadline = time.monotonic() + 30\n"
        "while sb._pool.qsize() < 2 and time.monotonic() < deadline:\n"
        "    time.sleep(0.1)\n"
        "print(os.getpid(), sb._pool.qsize(), flush=True)\n"
        "raise SystemExit(3)  # exits without close()\n"
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
        assert proc.returncode == 3, proc.stderr
        pid, pooled = proc.stdout.split()
        assert pooled == "2"  # there were warm containers to leak
        left = probe._client.containers.list(all=True, filters={"label": f"{LABEL}.owner-pid={pid}"})
        assert left == [], [c.name for c in left]
    finally:
        probe.close()
