"""tq-agents: typed multi-agent workflows on a local Qwen model.

The import is light: torch, transformers, docker and openai load only when a backend that needs
them is used.

```python
from tq_agents import Agent, Review, Workflow, tool
from tq_agents.testing import ScriptedModel

@tool
def word_count(text: str) -> int:
    '''Count words.'''
    return len(text.split())

wf = (
    Workflow("write-review", model=ScriptedModel(...))          # any ChatModel
    .add_node(Agent("writer", "Write it.", tools=[word_count]), max_visits=3)
    .add_node(Agent("reviewer", "Review it.", output_type=Review))
    .add_edge("writer", "reviewer")
    .add_edge("reviewer", "writer", condition=lambda r: r.verdict == "revise")
    .set_entry("writer")                                         # (every node has a predecessor)
)
result = wf.run_sync("a haiku about queues", store="runs.sqlite", max_turns=10)
# async: run = wf.start(...); async for ev in run.events(): ...; await run.result()
# after a crash: await tq_agents.resume(run_id, wf, "runs.sqlite"); audit: await tq_agents.replay(...)
```
"""

from tq_agents._replay import Divergence, ReplayReport, replay
from tq_agents._tool import Tool, ToolError, ToolResult, tool
from tq_agents.agent import Agent, RetryPolicy, TurnContext, TurnResult
from tq_agents.errors import (
    AgentTurnError,
    ConfigError,
    ModelError,
    ModelRequestError,
    ModelUnavailableError,
    ReplayDivergenceError,
    RunError,
    RunNotFoundError,
    SandboxError,
    SandboxUnavailableError,
    StoreError,
    ToolDefinitionError,
    TQError,
    TransientModelError,
    UserError,
    WorkflowValidationError,
)
from tq_agents.events import (
    Event,
    InputDropped,
    MessageEmitted,
    ModelCallFailed,
    ModelCallFinished,
    ModelCallStarted,
    NodeFinished,
    NodeStarted,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from tq_agents.graph import Workflow
from tq_agents.messages import (
    CodeResult,
    Escalation,
    FinalReport,
    Message,
    Plan,
    PlanStep,
    Review,
    ReviewIssue,
    SupportReply,
    TextMessage,
    Translation,
    UserInput,
)
from tq_agents.models.base import (
    ChatMessage,
    ChatModel,
    ChatRequest,
    ChatResponse,
    StreamDelta,
    ToolCall,
    Usage,
)
from tq_agents.scheduler import Run, RunResult, resume, start_resume
from tq_agents.store import (
    MemoryRunStore,
    RunInfo,
    RunStore,
    SQLiteRunStore,
    StoredEvent,
    default_store_path,
    open_store,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentTurnError",
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "CodeResult",
    "ConfigError",
    "Divergence",
    "Escalation",
    "Event",
    "FinalReport",
    "InputDropped",
    "MemoryRunStore",
    "Message",
    "MessageEmitted",
    "ModelCallFailed",
    "ModelCallFinished",
    "ModelCallStarted",
    "ModelError",
    "ModelRequestError",
    "ModelUnavailableError",
    "NodeFinished",
    "NodeStarted",
    "Plan",
    "PlanStep",
    "ReplayDivergenceError",
    "ReplayReport",
    "RetryPolicy",
    "Review",
    "ReviewIssue",
    "Run",
    "RunError",
    "RunFinished",
    "RunInfo",
    "RunNotFoundError",
    "RunResult",
    "RunResumed",
    "RunStarted",
    "RunStore",
    "SQLiteRunStore",
    "SandboxError",
    "SandboxUnavailableError",
    "StoreError",
    "StoredEvent",
    "StreamDelta",
    "SupportReply",
    "TQError",
    "TextMessage",
    "Tool",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallStarted",
    "ToolDefinitionError",
    "ToolError",
    "ToolResult",
    "TransientModelError",
    "Translation",
    "TurnContext",
    "TurnResult",
    "Usage",
    "UserError",
    "UserInput",
    "Workflow",
    "WorkflowValidationError",
    "__version__",
    "default_store_path",
    "open_store",
    "replay",
    "resume",
    "start_resume",
    "tool",
]
