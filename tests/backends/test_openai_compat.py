"""OpenAICompatible in both modes against ``tq serve``: the agent scenario, retries through a fault proxy,
errors that will not heal."""

from __future__ import annotations

import pytest

from tq_agents.errors import ModelRequestError, TransientModelError
from tq_agents.models.base import ChatMessage, ChatRequest

from ._scenario import EXECUTED, run_structured_scenario, run_tool_scenario

pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(300)


def _model(base: str, model_id: str, mode: str, **kw):
    from tq_agents.models.openai_compat import OpenAICompatible

    kw.setdefault("backoff_initial", 0.05)
    kw.setdefault("backoff_max", 0.2)
    return OpenAICompatible(base, model_id, mode=mode, family="qwen2.5", **kw)


@pytest.mark.parametrize("mode", ["tools", "raw"])
async def test_agent_scenario_over_http(tq_server, mode):
    base, model_id = tq_server
    model = _model(base, model_id, mode)
    try:
        rec = await run_tool_scenario(model, ["add 1 and 2", "shout hi", "both please"])
        assert all(r.model == model_id for r in rec.responses)
        await run_structured_scenario(model, n=2)
    finally:
        await model.close()


async def test_raw_mode_renders_qwen_prompt_and_sends_grammar(tq_server):
    base, model_id = tq_server
    model = _model(base, model_id, "raw")
    req = ChatRequest(
        messages=[ChatMessage(role="user", content="hi")],
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
        tool_choice="required",
    )
    prompt, grammar = model.render(req)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert grammar is not None and "<[151657]>" in grammar
    resp = await model.complete(req)
    names = [c.name for c in resp.message.tool_calls]
    assert names and set(names) == {"f"} and resp.tool_call_errors == []
    await model.close()


@pytest.mark.parametrize("mode", ["tools", "raw"])
async def test_retries_recover_through_faults_without_duplicate_tool_runs(tq_server, mode):
    from ._proxy import FaultProxy
    from .conftest import free_port

    base, model_id = tq_server
    with FaultProxy(base.removesuffix("/v1"), free_port(), hold_s=7.0) as proxy:
        model = _model(proxy.base_url, model_id, mode, timeout=6.0, max_attempts=8)
        proxy.faults.extend([429, 503, "timeout", None, 429, None, 503, 502])
        try:
            # the scenario's own budget (96): at 48 the grammar's worst case (shout: an 8-char string plus a
            # 16-digit `times`, forced text sampled token by token at temperature 1) can overrun, cutting the call
            rec = await run_tool_scenario(model, ["add 1 and 2", "shout hi"])
        finally:
            await model.close()
        injected = [f for _, f in proxy.log if f is not None]
        assert injected == [429, 503, "timeout", 429, 503, 502]
        # every injected fault cost one attempt (a slow, busy machine may add a genuine timeout now and then)
        assert model.attempts >= len(rec.responses) + len(injected)
        emitted = [c.name for r in rec.responses for c in r.message.tool_calls]
        assert [name for name, _ in EXECUTED] == emitted  # each emitted call ran exactly once


async def test_retry_budget_exhausted_raises_transient(tq_server):
    from ._proxy import FaultProxy
    from .conftest import free_port

    base, model_id = tq_server
    with FaultProxy(base.removesuffix("/v1"), free_port()) as proxy:
        model = _model(proxy.base_url, model_id, "tools", max_attempts=3)
        proxy.faults.extend([503, 503, 503, 503])
        with pytest.raises(TransientModelError, match="503"):
            await model.complete(ChatRequest(messages=[ChatMessage(role="user", content="x")], max_tokens=4))
        assert model.attempts == 3
        await model.close()


async def test_errors_that_will_not_heal_fail_at_once(tq_server):
    from ._proxy import FaultProxy
    from .conftest import free_port

    base, model_id = tq_server
    req = ChatRequest(messages=[ChatMessage(role="user", content="x")], max_tokens=4)
    wrong = _model(base, "no-such-model", "tools")
    with pytest.raises(ModelRequestError, match="404") as e:
        await wrong.complete(req)
    assert wrong.attempts == 1 and "GET /v1/models" in str(e.value)
    await wrong.close()
    with FaultProxy(base.removesuffix("/v1"), free_port()) as proxy:
        model = _model(proxy.base_url, model_id, "raw")
        proxy.faults.append(401)
        with pytest.raises(ModelRequestError, match="401") as e:
            await model.complete(req)
        assert model.attempts == 1 and "api_key" in str(e.value)
        await model.close()
    down = _model("http://127.0.0.1:9/v1", model_id, "tools", max_attempts=2)
    with pytest.raises(TransientModelError, match="cannot connect"):
        await down.complete(req)
    assert down.attempts == 2
    await down.close()


@pytest.mark.parametrize("mode", ["tools", "raw"])
async def test_streaming_over_http(tq_server, mode):
    base, model_id = tq_server
    model = _model(base, model_id, mode)
    try:
        req = ChatRequest(messages=[ChatMessage(role="user", content="s")], max_tokens=12, temperature=1.0, seed=5)
        deltas = [d async for d in model.stream(req)]
        final = deltas[-1].response
        assert final is not None and final.usage.completion_tokens == 12 and final.finish_reason == "length"
        assert len(deltas) >= 4 and "".join(d.text for d in deltas) == final.raw_text
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]
        calls_req = ChatRequest(messages=[ChatMessage(role="user", content="c")], tools=tools, tool_choice="required")
        streamed = [d async for d in model.stream(calls_req)][-1].response
        assert streamed.message.tool_calls and {c.name for c in streamed.message.tool_calls} == {"f"}
        assert streamed.tool_call_errors == [] and streamed.finish_reason == "tool_calls"
    finally:
        await model.close()


def _bad_upstream():
    """A real HTTP server that answers 200 with what an OpenAI client does not expect (``mode`` picks what)."""
    import json

    from fastapi import FastAPI
    from fastapi.responses import Response, StreamingResponse

    app = FastAPI()
    app.state.mode = None

    def chunk(delta: dict) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}
        return "data: " + json.dumps(body) + "\n\n"

    @app.post("/v1/chat/completions", response_model=None)
    async def chat():  # no annotations: this module postpones them, and FastAPI could not resolve them
        mode = app.state.mode
        if mode == "truncated_json":
            return Response(b'{"id": "x", "choices": [', media_type="application/json")
        if mode == "html":
            return Response(b"<html>gateway says hi</html>", media_type="text/html")

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            yield chunk({"content": "Hel"})
            if mode == "garbled_event":
                yield 'data: {"id": "c", "choices": [\n\n'
            else:
                kind = "invalid_request_error" if mode == "invalid_event" else "server_error"
                yield "data: " + json.dumps({"error": {"message": "engine crashed", "type": kind}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def test_garbled_upstream_answers_raise_tq_errors():
    from .conftest import serve_in_thread

    app = _bad_upstream()
    req = ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=4)
    with serve_in_thread(app) as base:
        model = _model(base, "m", "tools", max_attempts=2, timeout=10.0)
        try:
            for mode, start in (("truncated_json", '{"id": "x", "choices": ['), ("html", "<html>gateway says hi")):
                app.state.mode = mode
                before = model.attempts
                with pytest.raises(TransientModelError) as e:
                    await model.complete(req)
                assert base in str(e.value) and start in str(e.value) and "base_url" in str(e.value)
                assert model.attempts - before == 2  # transient: retried
                with pytest.raises(TransientModelError, match="base_url"):
                    async for _ in model.stream(req):
                        pass
            app.state.mode = "garbled_event"
            with pytest.raises(TransientModelError, match="not valid JSON"):
                async for _ in model.stream(req):
                    pass
        finally:
            await model.close()


async def test_error_event_mid_stream_maps_by_its_type():
    from .conftest import serve_in_thread

    app = _bad_upstream()
    req = ChatRequest(messages=[ChatMessage(role="user", content="hi")], max_tokens=4)
    with serve_in_thread(app) as base:
        model = _model(base, "m", "tools", max_attempts=1)
        try:
            for mode, error in (("server_event", TransientModelError), ("invalid_event", ModelRequestError)):
                app.state.mode = mode
                got = []
                with pytest.raises(error, match="engine crashed") as e:
                    async for d in model.stream(req):
                        got.append(d.text)
                assert type(e.value) is error and got == ["Hel"]
        finally:
            await model.close()
