"""The server's streaming against a real tiny Qwen3 checkpoint whose chat template opens the reasoning in the
prompt (as Qwen3-*-Thinking-2507 do), and mid-stream errors; served in-process by uvicorn on a free port."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from tq_agents.errors import ModelRequestError
from tq_agents.models.base import ChatMessage, ChatRequest

from .conftest import serve_in_thread

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(300)


def _copy_checkpoint(src: Path, dst: Path, *, open_think: bool = False) -> Path:
    shutil.copytree(src, dst)
    if open_think:
        cfg_path = dst / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text())
        template = cfg["chat_template"]
        start = template.rindex("{%- if add_generation_prompt -%}")  # the template's last block
        opened = '{{- "<|im_start|>assistant\\n<think>\\n" -}}'
        cfg["chat_template"] = template[:start] + "{%- if add_generation_prompt -%}" + opened + "{%- endif -%}"
        cfg_path.write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def thinking_server(tiny_checkpoint_qwen3, tmp_path_factory):
    from tq_agents.models.local import LocalQwen
    from tq_agents.server import create_app

    dst = tmp_path_factory.mktemp("think") / "tiny-qwen3-thinking"
    path = _copy_checkpoint(tiny_checkpoint_qwen3, dst, open_think=True)
    model = LocalQwen(str(path), max_tokens=64).load()
    with serve_in_thread(create_app(model, model_id="m")) as base:
        yield base, model


def _collect(chunks) -> tuple[str, str]:
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    extra = [(c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices]
    return content, "".join(r or "" for r in extra)


def test_prompt_opened_reasoning_is_not_streamed_as_content(thinking_server):
    base, model = thinking_server
    assert model.prepare(ChatRequest(messages=[ChatMessage(role="user", content="hi")])).opened_think
    client = openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=60)
    try:
        for seed in (1, 2):
            kw = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, "temperature": 1.0}
            full = client.chat.completions.create(**kw, seed=seed).choices[0].message
            reasoning = (full.model_extra or {}).get("reasoning_content")
            assert reasoning and not full.content  # no </think>: all of it is reasoning
            content, streamed_reasoning = _collect(list(client.chat.completions.create(**kw, seed=seed, stream=True)))
            assert content == (full.content or "")
            assert streamed_reasoning == reasoning
    finally:
        client.close()


def test_streamable_content_starts_after_the_reasoning():
    from tq_agents.server import _streamable_content

    # the prompt opened the reasoning: nothing is content before </think>
    assert _streamable_content("step one, then", True) == ("", False)
    assert _streamable_content("step one</think>\n\nThe answer <", True) == ("The answer", False)
    assert _streamable_content("step one</think>\n\nThe answer is 4. ", True) == ("The answer is 4.", False)
    assert _streamable_content("hmm <tool_call>\n{", True) == ("", True)  # a call ends the reasoning
    # the model opened it itself
    assert _streamable_content("<think>\nhmm</think>Hi", False) == ("Hi", False)
    assert _streamable_content("Hi <tool_call>", False) == ("Hi", True)


async def test_mid_stream_request_error_is_an_invalid_request_error_event(tiny_checkpoint, tmp_path):
    """A request error raised after the stream started (here: the engine was closed) is an SSE error event of
    type invalid_request_error, which OpenAICompatible.stream raises as ModelRequestError."""
    from tq_agents.models.local import LocalQwen
    from tq_agents.models.openai_compat import OpenAICompatible
    from tq_agents.server import create_app

    model = LocalQwen(str(_copy_checkpoint(tiny_checkpoint, tmp_path / "tiny")), max_tokens=8).load()
    model.engine.close()
    with serve_in_thread(create_app(model, model_id="m")) as base:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with httpx.AsyncClient(timeout=60) as h:
            r = await h.post(base + "/chat/completions", json=body)
        events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        errors = [e["error"] for e in events if "error" in e]
        assert errors and errors[0]["type"] == "invalid_request_error" and "closed" in errors[0]["message"]
        client = OpenAICompatible(base, "m", max_attempts=1)
        try:
            with pytest.raises(ModelRequestError, match="closed"):
                async for _ in client.stream(ChatRequest(messages=[ChatMessage(role="user", content="hi")])):
                    pass
        finally:
            await client.close()
