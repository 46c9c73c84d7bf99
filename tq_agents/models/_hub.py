"""Resolve a model argument (local checkpoint directory or Hugging Face hub id) to a local directory.

Never hangs on a machine without hub access: when the model is not cached, the hub is probed with a short
connect timeout first (skipped entirely when ``HF_HUB_OFFLINE``/``TQ_OFFLINE`` is set), and the one
``ModelUnavailableError`` below says every way forward.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from pathlib import Path

from tq_agents.errors import ModelUnavailableError

__all__ = ["is_offline", "offline_error", "resolve_model_path"]

log = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUTHY = {"1", "true", "yes", "on"}
_PROBE_TIMEOUT_S = 2.0


def offline_error(model: str) -> ModelUnavailableError:
    """The one error for "hub id given, not in the local cache, hub unreachable"."""
    return ModelUnavailableError(
        f"model '{model}' is not in the local Hugging Face cache and the hub cannot be reached (offline)",
        hint=(
            f"download it while online (`hf download {model}`), pass a local checkpoint directory instead, "
            "build a random-weight smoke model with `tq model tiny DIR` and pass DIR, "
            "or use an OpenAI-compatible server (vLLM, SGLang, llama.cpp, `tq serve`) with --base-url URL"
        ),
    )


def is_offline() -> bool:
    """True when the hub must not be contacted: ``HF_HUB_OFFLINE``/``TQ_OFFLINE`` set, or huggingface.co
    does not accept a TCP connection within two seconds."""
    for var in ("HF_HUB_OFFLINE", "TQ_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUTHY:
            return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^https?://", "", endpoint).split("/")[0]
    port = 443 if endpoint.startswith("https") or ":" not in host else int(host.rsplit(":", 1)[1])
    host = host.split(":")[0]
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return False
    except OSError:
        return True


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or os.sep + os.sep in model or model.endswith(os.sep)


def resolve_model_path(model: str) -> Path:
    """Return a local directory holding the checkpoint ``model``.

    ``model`` is a local directory (must contain ``config.json``) or a hub id like ``Qwen/Qwen2.5-1.5B-Instruct``.
    A hub id is looked up in the local Hugging Face cache first; when absent it is downloaded only if the hub is
    reachable. Raises ``ModelUnavailableError`` (offline and uncached, bad path) with the ways forward.
    """
    if not model or not model.strip():
        raise ModelUnavailableError(
            "no model given", hint="pass a hub id such as Qwen/Qwen2.5-1.5B-Instruct or a checkpoint directory"
        )
    local = Path(model).expanduser()
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise ModelUnavailableError(
                f"'{model}' exists but is not a checkpoint directory (no config.json inside)",
                hint="pass the directory that holds config.json, tokenizer files and *.safetensors",
            )
        return local.resolve()
    if _looks_like_path(model) or not _HUB_ID.match(model):
        raise ModelUnavailableError(
            f"no checkpoint directory at '{model}' and it is not a hub id (expected ORG/NAME)",
            hint="pass an existing checkpoint directory, a hub id such as Qwen/Qwen2.5-1.5B-Instruct, "
            "or build a smoke model with `tq model tiny DIR`",
        )

    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError and friends: not (fully) cached
        log.debug("hub cache lookup for %s failed: %s", model, e)
    if is_offline():
        raise offline_error(model)
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja"]))
    except Exception as e:
        name = type(e).__name__
        if "NotFound" in name or "Repository" in name or "Gated" in name:
            raise ModelUnavailableError(
                f"hub id '{model}' cannot be downloaded: {e}".splitlines()[0],
                hint="check the spelling (ORG/NAME), log in with `hf auth login` for gated models, "
                "or pass a local checkpoint directory",
            ) from e
        raise offline_error(model) from e
