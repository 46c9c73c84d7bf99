"""Grammar-constrained decoding overhead on the local engine.

Runs the same Qwen tool-calling prompt through the tq engine (batch 1, greedy) without a grammar and with the
llguidance tool-call grammar (``tool_choice="required"``), in interleaved rounds so machine noise hits both
alike, and prints decode tokens/s for each, the per-token overhead, and the grammar's own costs (build, mask per
token). Model: a random-weight checkpoint of Qwen2.5-0.5B-Instruct's exact shape (``--shape qwen2.5-0.5b``,
built once and cached), or the tiny test shape with ``--quick``. The last line is

    constrained overhead: X%

(median over interleaved rounds of per-token decode time with the grammar over without it, minus one; the
rounds alternate their order so drift in machine load cancels). Target: <= 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from pathlib import Path

CLOCK = time.perf_counter

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_orders",
            "description": "Search the shop's orders.",
            "parameters": {
                "type": "object",
                "properties": {
                    "customer": {"type": "string", "description": "Customer name."},
                    "status": {"type": "string", "enum": ["open", "shipped", "returned"]},
                    "since_days": {"type": "integer", "minimum": 0, "maximum": 365},
                    "note": {"type": "string"},
                },
                "required": ["customer", "status", "note"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "translate",
            "description": "Translate a text.",
            "parameters": {
                "type": "object",
                "properties": {"text": {"type": "string"}, "target": {"type": "string"}},
                "required": ["text", "target"],
            },
        },
    },
]


class _Timed:
    """Wraps a TokenConstraint and accumulates the time spent in it."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def apply(self, logits: object) -> None:
        t = CLOCK()
        self.inner.apply(logits)  # type: ignore[attr-defined]
        self.seconds += CLOCK() - t
        self.calls += 1

    def advance(self, token_id: int) -> None:
        t = CLOCK()
        self.inner.advance(token_id)  # type: ignore[attr-defined]
        self.seconds += CLOCK() - t

    def is_finished(self) -> bool:
        return self.inner.is_finished()  # type: ignore[attr-defined,no-any-return]


def _checkpoint(shape: str, path: str | None) -> Path:
    from tq_agents.models.qwen import build_tiny_checkpoint
    from tq_agents.models.qwen._tokenizer import cache_dir

    target = Path(path) if path else cache_dir() / "bench" / f"{shape}-seed0"
    if not (target / "model.safetensors").is_file():
        print(f"building random-weight {shape} checkpoint in {target} ...", flush=True)
        build_tiny_checkpoint(target, family="qwen2.5", shape=shape, seed=0)
    return target


async def _decode(engine: object, ids: list[int], params: object, constraint: object | None) -> tuple[int, float]:
    """(decoded tokens after the first, seconds from first to last token)."""
    handle = engine.submit(ids, params, constraint=constraint)  # type: ignore[attr-defined]
    stamps: list[float] = []
    async for _ in handle:
        stamps.append(CLOCK())
    await handle.result()
    return len(stamps) - 1, (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="qwen2.5-0.5b", help="checkpoint shape (tiny, qwen2.5-0.5b)")
    ap.add_argument("--checkpoint", default=None, help="use this checkpoint directory instead of building one")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved rounds (each: one free + one constrained)")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per generation")
    ap.add_argument("--dtype", default="fp32", help="engine precision: fp32, bf16, int8")
    ap.add_argument("--quick", action="store_true", help="tiny shape, few rounds: a few seconds (CI smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.shape, args.rounds, args.tokens = "tiny", 3, 48
    logging.basicConfig(level=logging.ERROR)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from tq_agents.models._engine import Engine, SamplingParams, load_model
    from tq_agents.models._grammar import GrammarCompiler, GrammarLimits, tool_call_grammar

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    path = _checkpoint(args.shape, args.checkpoint)
    t0 = CLOCK()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    model = load_model(str(path), dtype=args.dtype)
    engine = Engine(model, max_batch_size=2, name="bench")  # prefix cache on: prefill once, measure decode
    print(f"model: {path.name} ({args.shape}, {args.dtype}), loaded in {CLOCK() - t0:.1f}s; torch threads "
          f"{torch.get_num_threads()}")  # fmt: skip

    t = CLOCK()
    compiler = GrammarCompiler.for_tokenizer(tok, vocab_size=engine.vocab_size)
    print(f"grammar compiler (vocabulary scan, once per tokenizer): {CLOCK() - t:.2f}s")
    limits = GrammarLimits(max_tokens=args.tokens, max_calls=2)
    builds = []
    for _ in range(5):
        t = CLOCK()
        grammar = tool_call_grammar(TOOLS, choice="required", limits=limits, tool_call_ids=compiler.tool_call_ids)
        compiler.constraint(grammar)
        builds.append(CLOCK() - t)
    print(f"grammar build + matcher (per request): median {statistics.median(builds) * 1e3:.2f} ms")

    messages = [
        {"role": "system", "content": "You are the shop's support agent."},
        {"role": "user", "content": "Find open orders of Ana Lima and translate the note to German."},
    ]
    prompt = tok.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    ids = tok.encode(prompt, add_special_tokens=False)
    free_params = SamplingParams(max_new_tokens=args.tokens, temperature=0.0)
    con_params = SamplingParams(max_new_tokens=args.tokens, temperature=0.0, stop_token_ids=(151645,))

    async def run() -> tuple[list[float], list[float], list[float], int]:
        await _decode(engine, ids, SamplingParams(max_new_tokens=4), None)  # warm-up (and prefix cache)
        free, con, grammar_share = [], [], []
        con_tokens = 0
        for r in range(args.rounds):
            for kind in ("free", "con") if r % 2 == 0 else ("con", "free"):  # alternate the order: no bias
                if kind == "free":
                    n, s = await _decode(engine, ids, free_params, None)
                    free.append(s / max(1, n))
                else:
                    timed = _Timed(compiler.tool_calls(TOOLS, "required", limits)[1])
                    n, s = await _decode(engine, ids, con_params, timed)
                    con.append(s / max(1, n))
                    con_tokens += n + 1
                    grammar_share.append(timed.seconds / max(1, timed.calls))
        return free, con, grammar_share, con_tokens

    free, con, share, con_tokens = asyncio.run(run())
    engine.close()
    f_med, c_med, g_med = statistics.median(free), statistics.median(con), statistics.median(share)
    ratio = statistics.median(c / f for c, f in zip(con, free, strict=True))  # paired rounds cancel drift
    print(f"decode without grammar: {1 / f_med:8.2f} tok/s  ({f_med * 1e3:.2f} ms/token, median of {len(free)})")
    print(f"decode with grammar:    {1 / c_med:8.2f} tok/s  ({c_med * 1e3:.2f} ms/token, median of {len(con)}; "
          f"{con_tokens} constrained tokens)")  # fmt: skip
    print(f"grammar work per token (mask + apply + advance): {g_med * 1e6:.0f} us")
    print(f"per-token overhead: {(c_med - f_med) * 1e3:+.2f} ms (medians), paired-round ratio {ratio:.3f}; "
          f"grammar work is {g_med / f_med * 100:.2f}% of an unconstrained step")  # fmt: skip
    print(f"constrained overhead: {(ratio - 1) * 100:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
