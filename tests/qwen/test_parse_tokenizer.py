"""parse() on text that went through the real Qwen tokenizer, as a serving engine produces it.

Corpus completions (with their faults) are encoded with the real Qwen BPE plus the added tokens, an
``<|im_end|>`` is appended as the model would emit it, and the ids are decoded both ways an engine does
(``skip_special_tokens`` False and True). Both decodings must parse to the same calls, errors, content and
reasoning as the original text: the tags are whole added tokens that survive decoding, and the end token is
handled.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tq_agents.models.qwen import _parse as parse_module
from tq_agents.models.qwen import load_qwen_tokenizer, parse
from tq_agents.models.qwen._extract import clip

ROOT = Path(__file__).resolve().parents[2]


def corpus(n: int) -> list:
    spec = importlib.util.spec_from_file_location("tq_parse_corpus_tok", ROOT / "benchmarks" / "parse_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_corpus(n, seed=7), module.TOOLS


@pytest.fixture(autouse=True)
def _raise_internal_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "_RAISE_INTERNAL_ERRORS", True)


def summary(text: str, family: str, tools: list) -> tuple:
    r = parse(text, family=family, tools=tools)
    return (
        r.content,
        r.reasoning,
        [(c.id, c.name, c.arguments) for c in r.tool_calls],
        [(e.index, e.name, e.reason, clip(e.raw)) for e in r.errors],
    )


@pytest.mark.timeout(300)
def test_parse_is_stable_through_the_real_tokenizer() -> None:
    samples, tools = corpus(120)
    tokenizers = {family: load_qwen_tokenizer(family) for family in ("qwen2.5", "qwen3")}
    im_end = tokenizers["qwen3"].convert_tokens_to_ids("<|im_end|>")
    tool_call = tokenizers["qwen3"].convert_tokens_to_ids("<tool_call>")
    seen_calls = 0
    for sample in samples:
        tok = tokenizers["qwen2.5" if sample.family == "qwen2.5" else "qwen3"]
        ids = tok.encode(sample.text, add_special_tokens=False)
        if "<tool_call>" in sample.text:
            assert tool_call in ids  # the tag is one added token, as the model emits it
        ids.append(im_end)
        expected = summary(sample.text, sample.family, tools)
        seen_calls += len(expected[2])
        for decoded in (tok.decode(ids, skip_special_tokens=False), tok.decode(ids, skip_special_tokens=True)):
            assert summary(decoded, sample.family, tools) == expected, sample.text
    assert seen_calls > 100
