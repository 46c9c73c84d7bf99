"""Tool packs: code execution (sandboxed), commerce, text."""
