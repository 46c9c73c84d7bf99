"""Speed of ``tq_agents.models.qwen.render`` (plain Python) vs transformers' Jinja ``apply_chat_template``.

    python benchmarks/render.py            # every golden chat, 200 rounds
    python benchmarks/render.py --quick    # 20 rounds, a few seconds

Both sides render the same chats (the golden corpus in tests/qwen/golden/, 3 families) to the same text —
the script checks that the outputs are equal before timing. The Jinja side is transformers'
``apply_chat_template(tokenize=False)`` with the project's own chat template for the family (the one the
tiny checkpoints carry); its compiled template is cached by transformers, so this measures rendering, not
compilation. Timings are medians over rounds within one process; the ratio is what to read.
The last line is ``render µs tq/jinja: X/Y`` (median µs per chat).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from tq_agents.models.qwen import chat_template, load_qwen_tokenizer, render

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "qwen" / "golden"
FAMILIES = ("qwen2.5", "qwen3", "qwen3-coder")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20 rounds instead of 200")
    args = ap.parse_args()
    rounds = 20 if args.quick else 200

    tok = load_qwen_tokenizer("qwen3")
    jobs = []
    for family in FAMILIES:
        template = chat_template(family)
        for case in json.loads((GOLDEN / f"{family}.json").read_text(encoding="utf-8")):
            if any(
                isinstance(c["function"]["arguments"], str) for m in case["messages"] for c in m.get("tool_calls") or []
            ):
                continue  # a Jinja template cannot parse argument strings; render() can
            kw = {"add_generation_prompt": True, **case["kwargs"]}
            jobs.append((family, template, case["messages"], case["tools"], kw))

    def tq(job):
        family, _t, messages, tools, kw = job
        return render(messages, tools, family=family, **kw)

    def jinja(job):
        _f, template, messages, tools, kw = job
        return tok.apply_chat_template(messages, tools=tools, chat_template=template, tokenize=False, **kw)

    for job in jobs:  # same bytes on both sides (and warms transformers' template cache)
        if tq(job) != jinja(job):
            raise SystemExit(f"outputs differ for a {job[0]} chat: render() and the chat template disagree")

    per_chat: dict[str, list[float]] = {"tq": [], "jinja": []}
    for _ in range(rounds):
        for name, fn in (("tq", tq), ("jinja", jinja)):
            t0 = time.perf_counter()
            for job in jobs:
                fn(job)
            per_chat[name].append((time.perf_counter() - t0) / len(jobs) * 1e6)

    chars = sum(len(tq(j)) for j in jobs) / len(jobs)
    med = {k: statistics.median(v) for k, v in per_chat.items()}
    print(f"corpus: {len(jobs)} chats over {len(FAMILIES)} families, mean prompt {chars:.0f} chars, {rounds} rounds")
    print(f"median µs per chat: render {med['tq']:.1f}, jinja apply_chat_template {med['jinja']:.1f}")
    print(f"speedup render vs jinja: {med['jinja'] / med['tq']:.1f}x")
    print(f"render µs tq/jinja: {med['tq']:.1f}/{med['jinja']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
