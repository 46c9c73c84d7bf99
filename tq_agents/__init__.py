"""tq-agents: typed multi-agent workflows on a local Qwen model.

The import is light: torch, transformers, docker and openai load only when a backend that needs
them is used.
"""

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
    "Escalation",
    "FinalReport",
    "Message",
    "ModelError",
    "ModelRequestError",
    "ModelUnavailableError",
    "Plan",
    "PlanStep",
    "ReplayDivergenceError",
    "RetryPolicy",
    "Review",
    "ReviewIssue",
    "RunError",
    "RunNotFoundError",
    "SandboxError",
    "SandboxUnavailableError",
    "StoreError",
    "StreamDelta",
    "SupportReply",
    "TQError",
    "TextMessage",
    "Tool",
    "ToolCall",
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
    "WorkflowValidationError",
    "__version__",
    "tool",
]
