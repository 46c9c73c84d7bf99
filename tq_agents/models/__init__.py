"""Model backends behind one protocol. Concrete backends import torch/transformers/openai lazily."""

from tq_agents.models.base import (
    ChatMessage,
    ChatModel,
    ChatRequest,
    ChatResponse,
    MalformedToolCall,
    StreamDelta,
    StreamingChatModel,
    ToolCall,
    Usage,
)
from tq_agents.models.local import LocalQwen
from tq_agents.models.openai_compat import OpenAICompatible
from tq_agents.models.replay import RecordingModel, ReplayModel

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "LocalQwen",
    "MalformedToolCall",
    "OpenAICompatible",
    "RecordingModel",
    "ReplayModel",
    "StreamDelta",
    "StreamingChatModel",
    "ToolCall",
    "Usage",
]
