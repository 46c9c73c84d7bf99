"""The one exception tree of tq-agents, sorted by whose fault it is.

```
TQError                                  base of everything raised by tq_agents
├── UserError                            the application developer's mistake (fix the code/config)
│   ├── WorkflowValidationError          a workflow graph failed validate(); `.problems` lists each one
│   ├── ToolDefinitionError              @tool applied to something it cannot describe
│   ├── ConfigError                      bad option value, unknown workflow name, bad model id, ...
│   └── ChatFormatError                  messages/tools that cannot be rendered into a Qwen prompt
├── ModelError                           a model backend failed
│   ├── ModelUnavailableError            model cannot be loaded/reached (offline and uncached, bad path)
│   ├── TransientModelError              worth retrying: 429, 5xx, connection reset, timeout
│   └── ModelRequestError                will not heal by retrying: 400/401/404, bad prompt
├── SandboxError                         the sandbox failed (not the code inside it)
│   └── SandboxUnavailableError          no engine and no bubblewrap: says what to install
├── RunError                             something went wrong while a workflow ran
│   ├── AgentTurnError                   a turn failed after its bounded retries
│   ├── RunNotFoundError                 resume/replay of an unknown run id
│   └── ReplayDivergenceError            a replayed run asked something the record does not hold
└── StoreError                           the run store failed (I/O, corrupt log)
```

Every message says what to do next. Third-party exceptions (openai, docker, torch, sqlite3) are
translated at the border of the backend that uses them and chained with ``from``.
"""

from __future__ import annotations

__all__ = [
    "AgentTurnError",
    "ChatFormatError",
    "ConfigError",
    "ModelError",
    "ModelRequestError",
    "ModelUnavailableError",
    "ReplayDivergenceError",
    "RunError",
    "RunNotFoundError",
    "SandboxError",
    "SandboxUnavailableError",
    "StoreError",
    "TQError",
    "ToolDefinitionError",
    "TransientModelError",
    "UserError",
    "WorkflowValidationError",
]


class TQError(Exception):
    """Base class of every exception raised by tq_agents.

    ``hint`` is an optional one-line suggestion of what to do next; the CLI prints it under the error.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\nhint: {self.hint}"
        return self.message


class UserError(TQError):
    """The application developer's mistake: the code or configuration must change."""


class WorkflowValidationError(UserError):
    """A workflow failed validation. ``problems`` holds one line per problem, each naming a node or edge."""

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        self.problems = list(problems)
        text = "workflow is invalid:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text, hint=hint)


class ToolDefinitionError(UserError):
    """``@tool`` was applied to a function it cannot turn into a tool (e.g. an untyped parameter)."""


class ConfigError(UserError):
    """A bad option: unknown workflow name, malformed model id, conflicting flags."""


class ChatFormatError(UserError):
    """Chat messages or tool schemas that cannot be rendered into a Qwen prompt (says which one and why)."""


class ModelError(TQError):
    """A model backend failed."""


class ModelUnavailableError(ModelError):
    """The model cannot be loaded or reached: offline and not cached, bad local path, server down."""


class TransientModelError(ModelError):
    """A failure that may heal by retrying (rate limit, 5xx, connection error, timeout)."""


class ModelRequestError(ModelError):
    """A failure that will not heal by retrying (401, 404 model, invalid request)."""


class SandboxError(TQError):
    """The sandbox itself failed (not the code that ran inside it)."""


class SandboxUnavailableError(SandboxError):
    """No usable sandbox on this machine; the message says what to install."""


class RunError(TQError):
    """Something went wrong while a workflow ran."""


class AgentTurnError(RunError):
    """An agent turn failed after its bounded retries; ``reason`` says why in words."""


class RunNotFoundError(RunError):
    """``resume``/``replay`` was asked for a run id the store does not hold."""


class ReplayDivergenceError(RunError):
    """A replayed run made a request that differs from the recorded one."""


class StoreError(TQError):
    """The run store failed (I/O error, corrupt event log)."""
