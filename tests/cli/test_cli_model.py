"""`--model` resolution and the scripted-model testing path."""

from __future__ import annotations

import asyncio
import json

import pytest

from tq_agents._cli_model import DEFAULT_MODEL, default_store_path, load_script, resolve_model
from tq_agents.errors import ConfigError
from tq_agents.models.base import ChatMessage, ChatRequest


def test_scripted_model_from_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "a": [
                    {"tool_calls": [{"name": "get_order", "arguments": {"order_id": "A1"}}]},
                    {"content": "plain text"},
                    {"output": {"answer": "x"}},
                    {"answer": "y"},
                ]
            }
        )
    )
    model = resolve_model(f"scripted:{path}")
    req = ChatRequest(messages=[ChatMessage(role="user", content="hi")], agent="a")
    answers = [asyncio.run(model.complete(req)) for _ in range(4)]
    assert answers[0].message.tool_calls[0].name == "get_order"
    assert answers[0].message.tool_calls[0].arguments == {"order_id": "A1"}
    assert answers[1].message.content == "plain text"
    assert json.loads(answers[2].message.content) == {"answer": "x"}
    assert json.loads(answers[3].message.content) == {"answer": "y"}


@pytest.mark.parametrize(
    ("content", "message"),
    [("{nope", "not valid JSON"), ('["a"]', "must map agent names"), ('{"a": [{"tool_calls": [{}]}]}', "needs a name")],
)
def test_bad_scripts_are_config_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve_model(f"scripted:{path}")


def test_option_combinations_and_paths(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="--api-key needs --base-url"):
        resolve_model("Qwen/Qwen2.5-1.5B-Instruct", api_key="k")
    with pytest.raises(ConfigError, match="cannot be combined"):
        resolve_model(f"scripted:{tmp_path / 'x.json'}", base_url="http://h/v1")
    (tmp_path / "ckpt").mkdir()
    with pytest.raises(ConfigError, match="not a checkpoint"):
        resolve_model(str(tmp_path / "ckpt"))
    with pytest.raises(ConfigError, match="not found"):
        load_script(tmp_path / "missing.json")
    assert DEFAULT_MODEL == "Qwen/Qwen2.5-1.5B-Instruct"
    monkeypatch.setenv("TQ_STORE", str(tmp_path / "s.sqlite"))
    assert default_store_path() == tmp_path / "s.sqlite"
    monkeypatch.delenv("TQ_STORE")
    monkeypatch.delenv("TQ_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "tq-agents" / "runs.sqlite"
