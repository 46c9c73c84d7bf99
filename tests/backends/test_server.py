"""The real ``openai`` client against ``tq serve`` (a subprocess on a free loopback port, tiny checkpoint)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(300)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]


@pytest.fixture
def client(tq_server):
    base, _ = tq_server
    c = openai.OpenAI(base_url=base, api_key="x", max_retries=0, timeout=60)
    yield c
    c.close()


def test_models_and_health(client, tq_server):
    base, model_id = tq_server
    assert [m.id for m in client.models.list().data] == [model_id]
    health = httpx.get(base.removesuffix("/v1") + "/health").json()
    assert health["status"] == "ok" and health["model"] == model_id


def test_chat_completion_with_required_tool_calls(client, tq_server):
    _, model_id = tq_server
    for seed in range(4):
        r = client.chat.completions.create(
            model=model_id,
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=TOOLS,
            tool_choice="required",
            temperature=1.0,
            seed=seed,
            max_tokens=96,
        )
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls
        for call in choice.message.tool_calls:
            args = json.loads(call.function.arguments)
            if call.function.name == "get_weather":
                assert isinstance(args["city"], str) and args["unit"] in ("c", "f")
            else:
                assert call.function.name == "add" and isinstance(args["a"], int) and isinstance(args["b"], int)
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    named = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "add"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "add"}},
        max_tokens=64,
    )
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["add"]


def test_follow_up_turn_with_tool_result_and_json_schema(client, tq_server):
    _, model_id = tq_server
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["answer", "confidence"],
    }
    r = client.chat.completions.create(
        model=model_id,
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "21 C, sunny"},
        ],
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
        max_tokens=80,
    )
    data = json.loads(r.choices[0].message.content)
    assert isinstance(data["answer"], str) and 0 <= data["confidence"] <= 1


def test_streaming_chunks(client, tq_server):
    _, model_id = tq_server
    stream = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "tell me"}],
        max_tokens=16,
        temperature=1.0,
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(text_chunks) >= 5  # token by token, not one blob
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    full = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "tell me"}], max_tokens=16, temperature=1.0, seed=3
    )
    assert "".join(c.choices[0].delta.content for c in text_chunks).strip() == (full.choices[0].message.content or "")


def test_streaming_tool_calls(client, tq_server):
    _, model_id = tq_server
    stream = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "weather?"}],
        tools=TOOLS,
        tool_choice="required",
        max_tokens=80,
        stream=True,
    )
    chunks = list(stream)
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and all(json.loads(tc.function.arguments) is not None for tc in calls)
    assert not any("<tool_call>" in (c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_completions_endpoint(client, tq_server):
    _, model_id = tq_server
    r = client.completions.create(model=model_id, prompt="Hello", max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 8
    stream = list(client.completions.create(model=model_id, prompt="Hello", max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in stream) == r.choices[0].text


def test_bad_input_gets_openai_style_4xx(client, tq_server):
    base, model_id = tq_server
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404 and e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model=model_id, messages=[])
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": "x"}], tools=TOOLS, tool_choice="nope"
        )
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "x"}], temperature=9)
    with pytest.raises(openai.BadRequestError, match="role"):
        client.chat.completions.create(model=model_id, messages=[{"role": "wizard", "content": "x"}])
    raw = httpx.post(base + "/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(base + "/nope").status_code == 404


def test_concurrent_clients_share_one_engine(tq_server):
    base, model_id = tq_server
    health = base.removesuffix("/v1") + "/health"
    before = httpx.get(health).json()["engine"]

    async def main():
        c = openai.AsyncOpenAI(base_url=base, api_key="x", max_retries=0, timeout=120)
        try:
            jobs = [
                c.chat.completions.create(
                    model=model_id, messages=[{"role": "user", "content": f"q{i}"}], max_tokens=48, seed=i
                )
                for i in range(4)
            ]
            return await asyncio.gather(*jobs)
        finally:
            await c.close()

    results = asyncio.run(main())
    assert all(r.usage.completion_tokens == 48 for r in results)
    after = httpx.get(health).json()["engine"]
    assert after["requests"] - before["requests"] == 4
    assert after["max_batch"] >= 2  # the four requests were decoded together


def test_client_disconnect_cancels_the_generation(tq_server):
    import time

    base, model_id = tq_server
    health = base.removesuffix("/v1") + "/health"
    before = httpx.get(health).json()["engine"]["cancelled"]
    body = {"model": model_id, "messages": [{"role": "user", "content": "go on"}], "max_tokens": 4000, "stream": True}
    with httpx.stream("POST", base + "/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any(line.startswith("data: ") for line in got)
    deadline = time.monotonic() + 30
    while httpx.get(health).json()["engine"]["cancelled"] == before:
        assert time.monotonic() < deadline, "the engine kept generating after the client left"
        time.sleep(0.2)


USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("extra", "param", "says"),
    [
        ({"stream": True, "stream_options": True}, "stream_options", "must be an object, got a boolean"),
        ({"stream": True, "stream_options": "x"}, "stream_options", "must be an object, got a string"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "boolean"),
        ({"stream": "false"}, "stream", "must be a boolean"),
        ({"chat_template_kwargs": ["x"]}, "chat_template_kwargs", "must be an object, got an array"),
        ({"chat_template_kwargs": {"enable_thinking": [1]}}, "chat_template_kwargs.enable_thinking", "boolean"),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": "add"}},
            "tool_choice.function",
            "must be an object with a string 'name'",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": "s"}},
            "response_format.json_schema",
            "must be an object",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": None, "tool_calls": 5}]},
            "messages[1].tool_calls",
            "must be a list of tool calls",
        ),
        (
            {"messages": [*USER, {"role": "tool", "tool_call_id": 5, "content": "r"}]},
            "messages[1].tool_call_id",
            "must be a string or null, got a number",
        ),
        ({"messages": [{"role": "user", "content": "hi", "name": ["x"]}]}, "messages[0].name", "got an array"),
        (
            {"messages": [{"role": "assistant", "content": "a", "reasoning_content": {"x": 1}}]},
            "messages[0].reasoning_content",
            "got an object",
        ),
        ({"n": 2}, "n", "only n=1"),
    ],
)
def test_wrongly_typed_fields_get_an_openai_400_naming_the_field(tq_server, extra, param, says):
    base, model_id = tq_server
    r = httpx.post(base + "/chat/completions", json={"model": model_id, "messages": USER, "max_tokens": 2, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    assert param.split(".")[-1] in err["message"] and says in err["message"], err["message"]
    assert set(err) == {"message", "type", "param", "code"}


def test_body_that_is_not_utf8_gets_a_400(tq_server):
    base, model_id = tq_server
    body = b'{"model": "' + model_id.encode() + b'", "messages": [{"role": "user", "content": "\xff"}]}'
    r = httpx.post(base + "/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "not valid UTF-8" in r.json()["error"]["message"]


def test_null_n_and_null_max_completion_tokens_mean_not_given(tq_server):
    base, model_id = tq_server
    body = {"model": model_id, "messages": USER, "n": None, "max_completion_tokens": None, "max_tokens": 5}
    r = httpx.post(base + "/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 5  # max_tokens still applies
    r = httpx.post(base + "/chat/completions", json={**body, "max_completion_tokens": 3}, timeout=60)
    assert r.json()["usage"]["completion_tokens"] == 3  # max_completion_tokens wins when given
    r = httpx.post(base + "/chat/completions", json={**body, "max_completion_tokens": 0}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_completion_tokens"


def test_prompt_longer_than_the_context_is_a_400_streamed_or_not(client, tq_server):
    base, model_id = tq_server
    body = {"model": model_id, "messages": [{"role": "user", "content": "hello " * 40000}], "max_tokens": 4}
    for stream in (False, True):
        r = httpx.post(base + "/chat/completions", json={**body, "stream": stream}, timeout=120)
        assert r.status_code == 400, r.text[:300]
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and "context" in err["message"], err
    with pytest.raises(openai.BadRequestError, match="context"):
        for _ in client.chat.completions.create(**body, stream=True):
            pass


@pytest.mark.parametrize("tail", ["<", "<th"])
def test_streamed_content_keeps_a_trailing_partial_marker(client, tq_server, tail):
    """Content ending in what could start ``<think>``/``<tool_call>`` is held back while streaming, then sent."""
    _, model_id = tq_server
    schema = {"type": "string", "enum": [f"x {tail}y"]}  # the output is the JSON string "x <...y"
    kw = {
        "model": model_id,
        "messages": USER,
        "max_tokens": 16,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "stop": ['y"'],  # ... cut just before the end: the content ends with the partial marker
    }
    full = client.chat.completions.create(**kw).choices[0].message.content
    assert full == f'"x {tail}'
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full
