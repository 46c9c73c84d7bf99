"""How many intended tool calls ``tq_agents.models.qwen.parse`` recovers, vs vLLM's hermes rule.

    python benchmarks/parse.py            # 2,000 generated completions (seed 0)
    python benchmarks/parse.py --quick    # 300 completions, a couple of seconds

The corpus (``benchmarks/parse_corpus.py``) is seeded and realistic: Hermes-JSON completions (Qwen2.5 /
Qwen3, with and without ``<think>``) and Qwen3-Coder XML completions, each with one fault small models
really make, or none. A call counts as recovered when a returned call has the intended name and arguments.

The baseline re-implements vLLM's hermes tool parser: regex ``<tool_call>(.*?)</tool_call>|<tool_call>(.*)``,
``json.loads`` on each match, and if any fails the whole output is plain content (no calls). To be generous to
it, it runs on the text after vLLM's qwen3 reasoning split (everything before ``</think>`` removed), and its
arguments count as recovered when they equal the intended ones as decoded JSON. The headline compares the
Hermes-format outputs (the format that rule is for); Qwen3-Coder XML is reported for ``parse`` alone.
The last line is ``recovered tq/hermes: X/Y`` with X, Y the shares of intended calls recovered.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parse_corpus import TOOLS, Sample, make_corpus

from tq_agents.models.qwen import parse

_HERMES_RE = re.compile(r"<tool_call>(.*?)</tool_call>|<tool_call>(.*)", re.DOTALL)


def hermes_rule(text: str) -> list[tuple[str, Any]]:
    """vLLM's hermes parser, non-streaming: all calls, or none if any block is not valid JSON."""
    if "</think>" in text:  # vLLM's qwen3 reasoning parser runs first
        text = text.split("</think>", 1)[1]
    if "<tool_call>" not in text:
        return []
    try:
        calls = []
        for m in _HERMES_RE.findall(text):
            obj = json.loads(m[0] if m[0] else m[1])
            calls.append((obj["name"], obj.get("arguments", {})))
        return calls
    except Exception:
        return []


def tq_rule(sample: Sample) -> list[tuple[str, Any]]:
    r = parse(sample.text, family=sample.family, tools=TOOLS)
    return [(c.name, c.arguments) for c in r.tool_calls]


def count(intended: list[tuple[str, Any]], got: list[tuple[str, Any]]) -> tuple[int, int]:
    """(recovered, spurious): intended calls found among ``got`` (each used once), and calls left over."""
    left = list(got)
    found = 0
    for call in intended:
        if call in left:
            left.remove(call)
            found += 1
    return found, len(left)


def time_us(fn: Any, items: list[Any], repeat: int) -> float:
    for item in items[:50]:  # warm up
        fn(item)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, (time.perf_counter() - t0) / len(items) * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 completions, 1 timing round (a few seconds)")
    ap.add_argument("-n", type=int, default=None, help="number of completions (default 2000, quick 300)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = args.n or (300 if args.quick else 2000)
    corpus = make_corpus(n, seed=args.seed)
    hermes_fmt = [s for s in corpus if s.family != "qwen3-coder"]
    xml_fmt = [s for s in corpus if s.family == "qwen3-coder"]

    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for s in corpus:
        fmt = "xml" if s.family == "qwen3-coder" else "hermes"
        tq_found, tq_spur = count(s.intended, tq_rule(s))
        h_found, h_spur = count(s.intended, hermes_rule(s.text)) if fmt == "hermes" else (0, 0)
        row = rows[(fmt, s.fault)]
        for i, v in enumerate((1, len(s.intended), tq_found, h_found, tq_spur, h_spur)):
            row[i] += v

    print(f"corpus: {n} completions (seed {args.seed}): {len(hermes_fmt)} Hermes JSON, {len(xml_fmt)} Qwen3-Coder XML")
    print(f"{'format':7} {'fault':24} {'outputs':>7} {'calls':>6} {'tq':>6} {'hermes':>6} {'tq spur':>7} {'h spur':>6}")
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    for (fmt, fault), row in sorted(rows.items()):
        h = "-" if fmt == "xml" else row[3]
        hs = "-" if fmt == "xml" else row[5]
        print(f"{fmt:7} {fault:24} {row[0]:7d} {row[1]:6d} {row[2]:6d} {h!s:>6} {row[4]:7d} {hs!s:>6}")
        for i, v in enumerate(row):
            totals[fmt][i] += v
    ht, xt = totals["hermes"], totals["xml"]
    tq_share = ht[2] / ht[1] if ht[1] else 0.0
    h_share = ht[3] / ht[1] if ht[1] else 0.0
    print(
        f"hermes-format calls recovered: tq {ht[2]}/{ht[1]} ({tq_share:.1%}), "
        f"hermes rule {ht[3]}/{ht[1]} ({h_share:.1%})"
    )
    print(f"spurious calls (e.g. planned inside <think>): tq {ht[4]}, hermes rule {ht[5]}")
    if xt[1]:
        print(f"qwen3-coder XML calls recovered by tq: {xt[2]}/{xt[1]} ({xt[2] / xt[1]:.1%}), spurious {xt[4]}")

    repeat = 1 if args.quick else 3
    tq_us = time_us(lambda s: parse(s.text, family=s.family, tools=TOOLS), hermes_fmt, repeat)
    tq_nt_us = time_us(lambda s: parse(s.text, family=s.family), hermes_fmt, repeat)
    h_us = time_us(lambda s: hermes_rule(s.text), hermes_fmt, repeat)
    xml_us = time_us(lambda s: parse(s.text, family=s.family, tools=TOOLS), xml_fmt, repeat) if xml_fmt else 0.0
    print(
        f"µs per parse (Hermes outputs): tq with tools {tq_us:.1f}, tq without tools {tq_nt_us:.1f}, "
        f"hermes rule {h_us:.1f} (tq/hermes time ratio {tq_us / h_us:.1f}x); tq on XML outputs {xml_us:.1f}"
    )
    print(f"recovered tq/hermes: {tq_share:.3f}/{h_share:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
