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

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatRequest",
    "ChatResponse",
    "MalformedToolCall",
    "StreamDelta",
    "StreamingChatModel",
    "ToolCall",
    "Usage",
]
