"""Sandboxes for running model-written code: secure by default, same contract everywhere.

```
Sandbox (protocol)     run(code, *, language, files, timeout, env) -> ExecResult; arun = async twin
├── DockerSandbox      Docker Engine or Podman through the Docker API (DOCKER_HOST or base_url)
└── BwrapSandbox       bubblewrap, for machines without a container engine
default_sandbox()      the first of those that works here, else SandboxUnavailableError
```

`docker` is imported only when a DockerSandbox is created.
"""

from tq_agents.sandbox._base import BaseSandbox, ExecResult, Language, Sandbox, SandboxLimits
from tq_agents.sandbox._bwrap import BwrapSandbox
from tq_agents.sandbox._default import default_sandbox
from tq_agents.sandbox._docker import DEFAULT_IMAGE, DockerSandbox

__all__ = [
    "DEFAULT_IMAGE",
    "BaseSandbox",
    "BwrapSandbox",
    "DockerSandbox",
    "ExecResult",
    "Language",
    "Sandbox",
    "SandboxLimits",
    "default_sandbox",
]
