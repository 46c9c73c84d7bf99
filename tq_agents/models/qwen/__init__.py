"""Qwen formats: render, parse, tokenizer, tiny checkpoint."""
