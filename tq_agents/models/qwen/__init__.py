"""Qwen formats: render, parse, tokenizer, tiny checkpoint.

Heavy imports (torch, transformers, tokenizers) happen inside the functions that need them.
"""

from tq_agents.models.qwen._parse import ParsedCompletion, parse
from tq_agents.models.qwen._render import Family, normalize_messages, normalize_tools, render
from tq_agents.models.qwen._tiny import FAMILIES, SHAPES, build_tiny_checkpoint, chat_template, checkpoint_config
from tq_agents.models.qwen._tokenizer import (
    ADDED_TOKENS,
    EOS_TOKEN,
    PAD_TOKEN,
    added_tokens_for,
    load_qwen_tokenizer,
    qwen_tokenizer_json,
)

__all__ = [
    "ADDED_TOKENS",
    "EOS_TOKEN",
    "FAMILIES",
    "PAD_TOKEN",
    "SHAPES",
    "Family",
    "ParsedCompletion",
    "added_tokens_for",
    "build_tiny_checkpoint",
    "chat_template",
    "checkpoint_config",
    "load_qwen_tokenizer",
    "normalize_messages",
    "normalize_tools",
    "parse",
    "qwen_tokenizer_json",
    "render",
]
