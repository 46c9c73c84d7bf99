"""Fixtures of the backend tests: one shared LocalQwen per tiny checkpoint (the engine is per process anyway)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="backend tests need the `local` extra (torch, transformers, llguidance)")


@pytest.fixture(scope="session")
def local_qwen(tiny_checkpoint: Path):
    """``LocalQwen`` over the tiny Qwen2.5 checkpoint, loaded once."""
    from tq_agents.models.local import LocalQwen

    return LocalQwen(str(tiny_checkpoint), max_tokens=256).load()


@pytest.fixture(scope="session")
def local_qwen3(tiny_checkpoint_qwen3: Path):
    """``LocalQwen`` over the tiny Qwen3 checkpoint, loaded once."""
    from tq_agents.models.local import LocalQwen

    return LocalQwen(str(tiny_checkpoint_qwen3), max_tokens=256).load()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests of this directory with ``asyncio.run`` (no async plugin is installed)."""
    import asyncio
    import inspect

    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(pyfuncitem.obj(**kwargs))
    return True


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tq_server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """``tq serve`` started as a real subprocess on a free loopback port with the tiny checkpoint.

    Yields ``(base_url, model_id)``; ``base_url`` ends in ``/v1``.
    """
    import os
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    model_id = str(tiny_checkpoint)
    cmd = [sys.executable, "-c", "from tq_agents.cli import main; main()", "serve", "--model", model_id]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path_factory.mktemp("tq-serve") / "serve.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                out = log_path.read_text(errors="replace")
                pytest.fail(f"tq serve exited with {proc.returncode}:\n{out[-3000:]}")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("tq serve did not become healthy within 120 s")
            time.sleep(0.3)
        yield base + "/v1", model_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with a real uvicorn server on a free loopback port (in a thread) while in the block.

    Yields the base url ending in ``/v1``.
    """
    import threading
    import time

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def compiler(tiny_checkpoint: Path) -> tuple[Any, Any]:
    """(tokenizer, GrammarCompiler) over the tiny Qwen2.5 checkpoint's real Qwen tokenizer."""
    from transformers import AutoTokenizer

    from tq_agents.models._grammar import GrammarCompiler

    from ._random_logits import VOCAB

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    return tok, GrammarCompiler.for_tokenizer(tok, vocab_size=VOCAB)
