"""default_sandbox(): the best sandbox this machine offers, never the bare host."""

from __future__ import annotations

import logging
import os
import shutil

from tq_agents.sandbox._base import BaseSandbox, SandboxLimits

from tq_agents.errors import SandboxError, SandboxUnavailableError

__all__ = ["default_sandbox"]

log = logging.getLogger("tq_agents.sandbox")


def default_sandbox(
    limits: SandboxLimits | None = None,
    *,
    base_url: str | None = None,
    image: str | None = None,
    pool_size: int = 0,
) -> BaseSandbox:
    """Return a DockerSandbox when a Docker-API engine is reachable, else a BwrapSandbox.

    The engine is ``base_url`` if given (then it must work: its failure is raised, not skipped), else
    ``DOCKER_HOST``, else the default Docker socket if it exists. Without an engine, bubblewrap is used.
    With neither, SandboxUnavailableError says what to install. Code is never run on the bare host.
    """
    from tq_agents.sandbox._bwrap import BwrapSandbox
    from tq_agents.sandbox._docker import DockerSandbox

    url = base_url or os.environ.get("DOCKER_HOST")
    if not url and os.path.exists("/var/run/docker.sock"):
        url = "unix:///var/run/docker.sock"
    reason = "no DOCKER_HOST set and no /var/run/docker.sock"
    if url:
        try:
            return DockerSandbox(limits, base_url=url, image=image, pool_size=pool_size, connect_attempts=2)
        except ImportError as e:  # pragma: no cover - docker is a declared extra
            reason = f"docker SDK missing: {e}"
        except SandboxError as e:
            if base_url:
                raise
            reason = str(e)
        log.warning("sandbox: container engine at %s not usable (%s); trying bubblewrap", url, reason)
    if shutil.which("bwrap"):
        return BwrapSandbox(limits)
    raise SandboxUnavailableError(
        f"no sandbox available: container engine not usable ({reason}) and bubblewrap (bwrap) not found",
        hint='install Podman (apt-get install podman runc; eval "$(bash scripts/engine.sh start)"; '
        "bash sandbox/build_image.sh) or Docker, or bubblewrap (apt-get install bubblewrap)",
    )
