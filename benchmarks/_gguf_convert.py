"""Convert a Qwen2 (Qwen2.5) transformers checkpoint to GGUF for llama.cpp, with the `gguf` package.

Only what the engine benchmark needs: the ``qwen2`` architecture (dense, q/k/v biases, tied or untied output),
``F16`` or ``Q8_0`` weights (norms and biases stay ``F32``), and the checkpoint's BPE tokenizer
(``tokenizer.json``) written as a ``gpt2``-model vocabulary with Qwen2's pre-tokenizer.

    python benchmarks/_gguf_convert.py CKPT_DIR OUT.gguf --type Q8_0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["convert_qwen2"]

_LAYER_MAP = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    if parts[:2] == ["model", "layers"]:
        idx, module, kind = parts[2], ".".join(parts[3:-1]), parts[-1]
        if module in _LAYER_MAP:
            return f"blk.{idx}.{_LAYER_MAP[module]}.{kind}"
    raise ValueError(f"tensor {hf!r} has no GGUF name in the qwen2 converter")


def _add_tokenizer(writer, ckpt: Path, vocab_size: int) -> None:
    import gguf

    tok = json.loads((ckpt / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = dict(tok["model"]["vocab"])
    added = {a["id"]: a for a in tok.get("added_tokens", [])}
    for tid, a in added.items():
        vocab[a["content"]] = tid
    by_id = {i: t for t, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    special = {a["content"]: tid for tid, a in added.items()}
    eos = special.get("<|im_end|>", special.get("<|endoftext|>"))
    pad = special.get("<|endoftext|>", eos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if pad is not None:
        writer.add_pad_token_id(pad)
        writer.add_bos_token_id(pad)
    writer.add_add_bos_token(False)


def convert_qwen2(ckpt_dir: str | Path, out_path: str | Path, *, qtype: str = "Q8_0") -> Path:
    """Write ``out_path`` (GGUF) from the Qwen2 checkpoint in ``ckpt_dir``; ``qtype`` is ``F16`` or ``Q8_0``."""
    import gguf
    import torch
    from safetensors.torch import load_file

    ckpt, out = Path(ckpt_dir), Path(out_path)
    cfg = json.loads((ckpt / "config.json").read_text())
    if cfg.get("model_type") != "qwen2":
        raise ValueError(f"{ckpt}: model_type {cfg.get('model_type')!r} is not qwen2 (this converter is qwen2-only)")
    target = {"F16": gguf.GGMLQuantizationType.F16, "Q8_0": gguf.GGMLQuantizationType.Q8_0}.get(qtype)
    if target is None:
        raise ValueError(f"qtype must be F16 or Q8_0, got {qtype!r}")
    file_type = gguf.LlamaFileType.MOSTLY_F16 if qtype == "F16" else gguf.LlamaFileType.MOSTLY_Q8_0

    w = gguf.GGUFWriter(str(out), "qwen2")
    w.add_name(ckpt.name)
    w.add_context_length(int(cfg.get("max_position_embeddings", 32768)))
    w.add_embedding_length(int(cfg["hidden_size"]))
    w.add_block_count(int(cfg["num_hidden_layers"]))
    w.add_feed_forward_length(int(cfg["intermediate_size"]))
    w.add_head_count(int(cfg["num_attention_heads"]))
    w.add_head_count_kv(int(cfg.get("num_key_value_heads", cfg["num_attention_heads"])))
    rope = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0)
    w.add_rope_freq_base(float(rope))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_file_type(file_type)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(w, ckpt, int(cfg["vocab_size"]))

    tensors: dict[str, torch.Tensor] = {}
    for f in sorted(ckpt.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    if cfg.get("tie_word_embeddings", False):
        tensors.pop("lm_head.weight", None)
    for name in sorted(tensors):
        arr = tensors[name].to(torch.float32).numpy()
        gname = _gguf_name(name)
        if arr.ndim == 1:
            w.add_tensor(gname, arr.astype(np.float32))
        elif target == gguf.GGMLQuantizationType.F16:
            w.add_tensor(gname, arr.astype(np.float16))
        else:
            w.add_tensor(gname, gguf.quants.quantize(arr, target), raw_dtype=target)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--type", default="Q8_0", choices=["F16", "Q8_0"])
    a = ap.parse_args()
    print(convert_qwen2(a.checkpoint, a.out, qtype=a.type))


if __name__ == "__main__":
    main()
