"""Turn ``--model`` / ``--base-url`` / ``--api-key`` into a ``ChatModel``; default paths of the CLI.

``--model`` accepts:

* a local checkpoint directory (has ``config.json``) → ``LocalQwen`` in this process;
* a hub id such as ``Qwen/Qwen2.5-1.5B-Instruct`` → ``LocalQwen`` (must be cached when offline);
* any model name together with ``--base-url`` → ``OpenAICompatible`` (vLLM, Ollama, llama.cpp, ``tq serve``);
* ``scripted:PATH.json`` → ``tq_agents.testing.ScriptedModel`` loaded from a JSON script. This is the
  testing path: deterministic, no model at all (see ``load_script``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tq_agents.errors import ConfigError
from tq_agents.models.base import ChatModel

__all__ = ["DEFAULT_MODEL", "default_store_path", "load_script", "resolve_model"]

DEFAULT_MODEL = "Qwen/Qwen2.5-1.5B-Instruct"
"""What ``tq run`` uses when neither ``--model`` nor ``TQ_MODEL`` is given."""

SCRIPTED_PREFIX = "scripted:"


def default_store_path() -> Path:
    """The run store ``tq`` uses by default: ``$TQ_STORE`` if set, else the core default
    (``$TQ_HOME/runs.sqlite``, else ``$XDG_DATA_HOME/tq-agents/runs.sqlite``, i.e.
    ``~/.local/share/tq-agents/runs.sqlite``)."""
    env = os.environ.get("TQ_STORE")
    if env:
        return Path(env).expanduser()
    from tq_agents.store import default_store_path as core_default

    return core_default()


def load_script(path: str | Path) -> dict[str, list[Any]]:
    """Read a ScriptedModel script: ``{"agent name": [turn, ...], ...}``.

    Each turn is one model response, either a string (the text content: for a typed agent, the JSON of
    its output) or an object ``{"content": "...", "tool_calls": [{"name": ..., "arguments": {...}}]}``.
    An output may also be given as an object under ``"output"``; it is dumped to JSON as the content.
    """
    if not str(path).strip():
        raise ConfigError("--model scripted: names no script file", hint="pass --model scripted:PATH.json")
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(
            f"script file not found: {p}", hint="--model scripted:PATH.json needs an existing file"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"script {p} is not UTF-8 text (byte {e.start}: {e.reason})", hint="save the script as UTF-8 JSON"
        ) from None
    except OSError as e:
        raise ConfigError(
            f"cannot read script {p}: {e.strerror or e}", hint="--model scripted:PATH.json needs a readable JSON file"
        ) from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"script {p} is not valid JSON: {e}", hint="fix the JSON (line/column above)") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ConfigError(
            f"script {p} must map agent names to lists of turns",
            hint='e.g. {"support": [{"tool_calls": [{"name": "get_order", "arguments": {"order_id": "A1001"}}]}]}',
        )
    return data


def _step(turn: Any) -> Any:
    from tq_agents.testing import call

    if isinstance(turn, dict) and "tool_calls" in turn:
        return [call(c["name"], **(c.get("arguments") or {})) for c in turn["tool_calls"]]
    if isinstance(turn, dict) and set(turn) == {"content"}:
        return str(turn["content"])
    if isinstance(turn, dict) and set(turn) == {"output"}:
        return turn["output"]
    return turn


def _scripted(path: str) -> ChatModel:
    from tq_agents.testing import ScriptedModel

    script = load_script(path)
    try:
        steps = {agent: [_step(t) for t in turns] for agent, turns in script.items()}
    except (KeyError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"script {path}: a tool call needs a name and an arguments object ({e})",
            hint='write {"tool_calls": [{"name": "get_order", "arguments": {"order_id": "A1001"}}]}',
        ) from None
    return ScriptedModel(steps, name=f"scripted:{Path(path).name}")


def resolve_model(spec: str, *, base_url: str | None = None, api_key: str | None = None) -> ChatModel:
    """The ``ChatModel`` for a ``--model`` value (see the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise ConfigError("--model is empty", hint=f"pass a hub id (default {DEFAULT_MODEL}) or a local path")
    if spec.startswith(SCRIPTED_PREFIX):
        if base_url:
            raise ConfigError("--base-url cannot be combined with a scripted model", hint="drop one of them")
        return _scripted(spec[len(SCRIPTED_PREFIX) :])
    if base_url:
        from tq_agents.models.openai_compat import OpenAICompatible

        return OpenAICompatible(base_url, spec, api_key=api_key)  # type: ignore[no-any-return]
    if api_key:
        raise ConfigError(
            "--api-key needs --base-url", hint="pass the server URL, e.g. --base-url http://localhost:8000/v1"
        )
    local = Path(spec).expanduser()
    looks_like_path = spec.startswith((".", "/", "~")) or local.exists()
    if looks_like_path and not (local / "config.json").is_file():
        raise ConfigError(
            f"model path {local} is not a checkpoint (no config.json)",
            hint="build a smoke-test model with `tq model tiny PATH`, or pass a hub id like " + DEFAULT_MODEL,
        )
    from tq_agents.models.local import LocalQwen

    return LocalQwen(str(local) if looks_like_path else spec)  # type: ignore[no-any-return]
