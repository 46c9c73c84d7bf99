"""Offline and not cached: one clear error with the ways forward, no traceback, at the CLI and in the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tq_agents.errors import ModelUnavailableError
from tq_agents.models._hub import resolve_model_path

pytestmark = pytest.mark.timeout(120)

EXPECTED = (
    "error: model 'Qwen/Qwen2.5-1.5B-Instruct' is not in the local Hugging Face cache and the hub cannot be "
    "reached (offline)\n"
    "hint: download it while online (`hf download Qwen/Qwen2.5-1.5B-Instruct`), pass a local checkpoint "
    "directory instead, build a random-weight smoke model with `tq model tiny DIR` and pass DIR, or use an "
    "OpenAI-compatible server (vLLM, SGLang, llama.cpp, `tq serve`) with --base-url URL\n"
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TQ_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), **extra)  # an empty hub cache
    return env


@pytest.mark.parametrize(
    "how",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}],  # offline declared / hub unreachable
    ids=["HF_HUB_OFFLINE", "hub-unreachable"],
)
def test_tq_serve_offline_error_word_for_word(tmp_path: Path, how: dict[str, str]) -> None:
    cmd = [sys.executable, "-c", "from tq_agents.cli import main; main()", "serve"]
    cmd += ["--model", "Qwen/Qwen2.5-1.5B-Instruct", "--port", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path, **how), timeout=90)
    assert proc.returncode == 1
    assert proc.stderr == EXPECTED
    assert "Traceback" not in proc.stdout + proc.stderr


def test_resolve_model_path_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_checkpoint: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model_path(str(tiny_checkpoint)) == tiny_checkpoint.resolve()
    with pytest.raises(ModelUnavailableError, match="not in the local Hugging Face cache") as e:
        resolve_model_path("Qwen/Qwen3-0.6B")
    assert "tq model tiny" in str(e.value) and "--base-url" in str(e.value)
    with pytest.raises(ModelUnavailableError, match=r"no checkpoint directory at '\./missing'"):
        resolve_model_path("./missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match=r"no config\.json"):
        resolve_model_path(str(tmp_path / "empty"))


def test_local_qwen_offline_raises_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tq_agents.models.local import LocalQwen

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="hub cannot be reached"):
        LocalQwen("Qwen/Qwen2.5-1.5B-Instruct")
