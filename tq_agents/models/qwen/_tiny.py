"""Random-weight Qwen checkpoints laid out like a real release, with the real Qwen tokenizer.

No Qwen weights can be downloaded here, so tests and benchmarks run the real transformers Qwen code on
checkpoints built by :func:`build_tiny_checkpoint`: the true architecture (``Qwen2ForCausalLM`` /
``Qwen3ForCausalLM``), the true vocabulary (151,936 embedding rows, the real BPE and added tokens) and
a chat template of our own that renders exactly like :func:`tq_agents.models.qwen.render`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tq_agents.errors import ConfigError, ModelUnavailableError
from tq_agents.models.qwen._tokenizer import qwen_tokenizer_json, tokenizer_config

__all__ = ["FAMILIES", "SHAPES", "build_tiny_checkpoint", "chat_template", "checkpoint_config"]

FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")
VOCAB_ROWS = 151_936
BOS_ID = 151643  # <|endoftext|>
EOS_ID = 151645  # <|im_end|>

# Layer shapes. "tiny" keeps tests fast; the others are the exact shapes of the named releases.
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
    },
    "qwen2.5-0.5b": {  # Qwen/Qwen2.5-0.5B-Instruct
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 32768,
        "max_window_layers": 21,
    },
    "qwen3-0.6b": {  # Qwen/Qwen3-0.6B
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40960,
        "max_window_layers": 28,
    },
}
_SHAPE_FAMILIES = {"qwen2.5-0.5b": ("qwen2.5",), "qwen3-0.6b": ("qwen3", "qwen3-coder")}

# generation_config.json of the official releases.
_GENERATION = {
    "qwen2.5": {"repetition_penalty": 1.1, "temperature": 0.7, "top_p": 0.8, "top_k": 20},
    "qwen3": {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
    "qwen3-coder": {"repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20},
}


def chat_template(family: str) -> str:
    """The project's own Jinja chat template for ``family`` (renders exactly like ``render``)."""
    _check(family, "tiny")
    path = Path(__file__).parent / "data" / f"chat_template_{family}.jinja"
    return path.read_text(encoding="utf-8")


def _check(family: str, shape: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(
            f"unknown Qwen family {family!r}: expected one of {', '.join(FAMILIES)}",
            hint="use --family qwen2.5, qwen3 or qwen3-coder",
        )
    if shape not in SHAPES:
        raise ConfigError(
            f"unknown checkpoint shape {shape!r}: expected one of {', '.join(SHAPES)}",
            hint="use --shape tiny (tests), qwen2.5-0.5b or qwen3-0.6b (benchmarks)",
        )
    allowed = _SHAPE_FAMILIES.get(shape)
    if allowed is not None and family not in allowed:
        raise ConfigError(
            f"shape {shape!r} is a {allowed[0]} model but family is {family!r}",
            hint=f"use --family {allowed[0]} with --shape {shape}, or --shape tiny",
        )


def checkpoint_config(family: str = "qwen2.5", shape: str = "tiny") -> dict[str, Any]:
    """The ``config.json`` content (as transformers keyword arguments) of a checkpoint."""
    _check(family, shape)
    s = dict(SHAPES[shape])
    common: dict[str, Any] = {
        "vocab_size": VOCAB_ROWS,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "tie_word_embeddings": True,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
    }
    if family == "qwen2.5":
        s.pop("head_dim")  # Qwen2 derives head_dim = hidden / heads
        return {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **common, **s}
    return {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, **common, **s}


def build_tiny_checkpoint(
    path: str | Path, *, family: str = "qwen2.5", shape: str = "tiny", seed: int = 0, dtype: str | None = None
) -> Path:
    """Write a random-weight Qwen checkpoint directory and return its path.

    Files: ``config.json``, ``generation_config.json``, ``model.safetensors``, ``tokenizer.json``,
    ``tokenizer_config.json`` (``chat_template`` = the project's own template for ``family``, eos
    ``<|im_end|>``, pad ``<|endoftext|>``, the added tokens at their official ids). It loads with
    ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained``.

    ``family``: ``"qwen2.5"`` (``Qwen2ForCausalLM``), ``"qwen3"`` (``Qwen3ForCausalLM``) or
    ``"qwen3-coder"`` (a dense ``Qwen3ForCausalLM`` with the Qwen3-Coder chat template; the real Coder
    models are mixture-of-experts). ``shape``: ``"tiny"`` (2 layers, hidden 64: for tests),
    ``"qwen2.5-0.5b"`` (Qwen2.5-0.5B-Instruct's exact shape) or ``"qwen3-0.6b"`` (Qwen3-0.6B's).
    Weights are drawn from ``seed`` (same seed → same bytes) and stored as ``dtype``: default
    ``float32`` for ``tiny``, ``bfloat16`` (as released) for the full shapes.
    """
    _check(family, shape)
    try:
        import torch
        from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ModelUnavailableError(
            "torch and transformers are needed to build a checkpoint", hint="pip install 'tq-agents[local]'"
        ) from e
    dtype = dtype or ("float32" if shape == "tiny" else "bfloat16")
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"unknown dtype {dtype!r}: expected float32, bfloat16 or float16")
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    cfg = checkpoint_config(family, shape)
    kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures")}
    if family == "qwen2.5":
        config, model_cls = Qwen2Config(**kwargs), Qwen2ForCausalLM
    else:
        config, model_cls = Qwen3Config(**kwargs), Qwen3ForCausalLM
    config.architectures = cfg["architectures"]

    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = model_cls(config)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.generation_config.update(**_generation_config(family))
    model.save_pretrained(out, safe_serialization=True)
    (out / "model.safetensors").chmod(0o644)
    (out / "generation_config.json").write_text(json.dumps(_generation_config(family), indent=2) + "\n")

    shutil.copyfile(qwen_tokenizer_json(family), out / "tokenizer.json")
    tcfg = tokenizer_config(family, chat_template(family))
    (out / "tokenizer_config.json").write_text(json.dumps(tcfg, indent=2, ensure_ascii=False) + "\n")
    for stray in ("chat_template.jinja", "special_tokens_map.json"):
        (out / stray).unlink(missing_ok=True)
    return out


def _generation_config(family: str) -> dict[str, Any]:
    return {
        "bos_token_id": BOS_ID,
        "pad_token_id": BOS_ID,
        "do_sample": True,
        "eos_token_id": [EOS_ID, BOS_ID],
        **_GENERATION[family],
    }
