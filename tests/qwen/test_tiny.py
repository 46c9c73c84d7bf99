"""The tiny checkpoint: real transformers Qwen classes, real tokenizer, official layout and shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tq_agents.errors import ConfigError
from tq_agents.models.qwen import build_tiny_checkpoint, checkpoint_config

pytestmark = pytest.mark.timeout(300)

RELEASE_FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
}


def test_layout_and_special_tokens(tiny_checkpoint: Path) -> None:
    assert RELEASE_FILES <= {p.name for p in tiny_checkpoint.iterdir()}
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert cfg["model_type"] == "qwen2"
    assert cfg["vocab_size"] == 151936
    assert cfg["tie_word_embeddings"] is True
    assert cfg["eos_token_id"] == 151645
    tcfg = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    assert tcfg["eos_token"] == "<|im_end|>"
    assert tcfg["pad_token"] == "<|endoftext|>"
    assert "chat_template" in tcfg and "<|im_start|>" in tcfg["chat_template"]
    assert tcfg["added_tokens_decoder"]["151657"]["content"] == "<tool_call>"
    assert "151665" not in tcfg["added_tokens_decoder"]  # <tool_response> is a Qwen3 token
    gen = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [151645, 151643]


def test_loads_with_auto_classes_and_generates(tiny_checkpoint: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.get_input_embeddings().weight.shape == (151936, 64)
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()  # tied
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 151645
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 151643
    assert tok.bos_token is None
    assert tok.encode("<tool_call>") == [151657]
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt").input_ids
    assert ids[0, 0].item() == 151644  # <|im_start|>
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 4)
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], 151936)
    assert torch.isfinite(logits).all()


def test_qwen3_checkpoint(tiny_checkpoint_qwen3: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint_qwen3)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint_qwen3)
    assert type(model).__name__ == "Qwen3ForCausalLM"
    assert hasattr(model.model.layers[0].self_attn, "q_norm")  # Qwen3's per-head QK norm
    assert tok.encode("<think>") == [151667]
    assert tok.encode("</tool_response>") == [151666]
    ids = tok.encode("<|im_start|>assistant\n<think>\nx\n</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>")
    assert (
        tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nx\n</think>\n\n<tool_call>\n{}\n</tool_call>"
    )
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, enable_thinking=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_same_seed_same_weights(tmp_path: Path, tiny_checkpoint: Path) -> None:
    again = build_tiny_checkpoint(tmp_path / "again", family="qwen2.5", seed=0)
    assert (again / "model.safetensors").read_bytes() == (tiny_checkpoint / "model.safetensors").read_bytes()
    other = build_tiny_checkpoint(tmp_path / "other", family="qwen2.5", seed=1)
    assert (other / "model.safetensors").read_bytes() != (tiny_checkpoint / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("family", "shape", "params", "arch"),
    [
        ("qwen2.5", "qwen2.5-0.5b", 494_032_768, "Qwen2ForCausalLM"),  # Qwen2.5-0.5B-Instruct
        ("qwen3", "qwen3-0.6b", 596_049_920, "Qwen3ForCausalLM"),  # Qwen3-0.6B
    ],
)
def test_release_shapes(family: str, shape: str, params: int, arch: str) -> None:
    import torch
    import transformers

    cfg = checkpoint_config(family, shape)
    assert cfg["architectures"] == [arch]
    kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}
    config_cls = getattr(transformers, arch.replace("ForCausalLM", "Config"))
    with torch.device("meta"):  # no memory, no init: just the architecture
        model = getattr(transformers, arch)(config_cls(**kwargs))
    assert sum(p.numel() for p in model.parameters()) == params


def test_qwen25_05b_shape_facts() -> None:
    cfg = checkpoint_config("qwen2.5", "qwen2.5-0.5b")
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"]) == (24, 896, 14)
    assert (cfg["num_key_value_heads"], cfg["intermediate_size"]) == (2, 4864)
    assert cfg["tie_word_embeddings"] is True and cfg["rope_theta"] == 1e6 and cfg["vocab_size"] == 151936


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown Qwen family 'qwen4'"):
        build_tiny_checkpoint(tmp_path, family="qwen4")
    with pytest.raises(ConfigError, match="unknown checkpoint shape"):
        build_tiny_checkpoint(tmp_path, shape="huge")
    with pytest.raises(ConfigError, match=r"is a qwen2\.5 model"):
        build_tiny_checkpoint(tmp_path, family="qwen3", shape="qwen2.5-0.5b")


def test_cli_model_tiny(tmp_path: Path) -> None:
    out = tmp_path / "cli-ckpt"
    code = "import sys; from tq_agents.cli import main; sys.argv[0] = 'tq'; main()"
    args = ["model", "tiny", str(out), "--family", "qwen3", "--seed", "3"]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "qwen3" in proc.stdout
    assert RELEASE_FILES <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    bad = subprocess.run(
        [sys.executable, "-c", code, "model", "tiny", str(tmp_path / "x"), "--family", "nope"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert "unknown Qwen family 'nope'" in bad.stderr
