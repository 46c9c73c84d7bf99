"""Local engine speed on an agent workload: naive HF ``generate`` vs the tq engine vs llama.cpp.

Workload (fixed token counts, every turn forced to exactly ``--new`` tokens, no stop tokens): ``--agents`` agents
share a ``--prefix``-token system+tools prefix, each has its own ``--task``-token task, and they run ``--rounds``
rounds; in round r each agent's prompt is the prefix, its task, and its own history (every earlier answer followed
by a ``--followup``-token tool result). Every agent asks the model once per round, all agents of a round at once.

Run three ways, each on the same random-weight checkpoint of Qwen2.5-0.5B-Instruct's exact shape (built once with
``build_tiny_checkpoint(shape="qwen2.5-0.5b")`` and cached; ``--quick`` uses the tiny test shape):

(a) naive: HF ``generate`` per turn, serially, the full prompt every time (what Qwen-Agent/smolagents do);
(b) tq: the tq engine, the turns of a round submitted concurrently (continuous batching + prefix cache);
(c) llama.cpp through ``llama-cpp-python`` on our GGUF conversion (F16 and Q8_0), serially (one sequence per
    ``Llama``; its own longest-prefix KV reuse with the previous prompt is on, as in its server's default).

Prints wall time and aggregate generated tokens/s for each, the measured memory read bandwidth and the batch-1
decode bandwidth the engine achieves (weight bytes read per step / step time, as a share of the read bandwidth
probed right before, in five rounds; the median round is reported, since both drift with the load of this
shared machine). The last lines are

    speedup tq/naive: X
    speedup tq/llama.cpp-q8: Y
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CLOCK = time.perf_counter
log = logging.getLogger("bench.engine")


@dataclass
class Workload:
    agents: int
    prefix: int
    task: int
    followup: int
    rounds: int
    new: int
    seed: int = 0

    def tokens(self, vocab: int) -> tuple[list[int], list[list[int]], list[list[list[int]]]]:
        """(shared prefix, per-agent task, per-agent per-round follow-up) ids, drawn from ordinary BPE ids."""
        import random

        rng = random.Random(self.seed)
        hi = min(vocab, 150_000)

        def draw(n: int) -> list[int]:
            return [rng.randrange(100, hi) for _ in range(n)]

        prefix = draw(self.prefix)
        tasks = [draw(self.task) for _ in range(self.agents)]
        follow = [[draw(self.followup) for _ in range(self.rounds)] for _ in range(self.agents)]
        return prefix, tasks, follow

    @property
    def turns(self) -> int:
        return self.agents * self.rounds

    @property
    def generated(self) -> int:
        return self.turns * self.new


def run_workload(wl: Workload, vocab: int, generate_round) -> tuple[float, int]:
    """Drive the rounds; ``generate_round(prompts) -> answers`` (each answer exactly ``wl.new`` ids).

    Returns (wall seconds, prompt tokens sent)."""
    prefix, tasks, follow = wl.tokens(vocab)
    history: list[list[int]] = [[] for _ in range(wl.agents)]
    sent = 0
    t0 = CLOCK()
    for r in range(wl.rounds):
        prompts = [prefix + tasks[a] + history[a] for a in range(wl.agents)]
        sent += sum(len(p) for p in prompts)
        answers = generate_round(prompts)
        for a, ans in enumerate(answers):
            if len(ans) != wl.new:
                raise RuntimeError(f"a turn produced {len(ans)} tokens, expected exactly {wl.new}")
            history[a] = history[a] + ans + follow[a][r]
    return CLOCK() - t0, sent


# ------------------------------------------------------------------------------------------------ systems
def naive_round(model, new: int):
    import torch

    def gen(prompts: list[list[int]]) -> list[list[int]]:
        outs = []
        with torch.inference_mode():
            for p in prompts:
                ids = torch.tensor([p])
                o = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=0,
                )
                outs.append(o[0, len(p) :].tolist())
        return outs

    return gen


def tq_round(engine, new: int):
    from tq_agents.models._engine import SamplingParams

    def gen(prompts: list[list[int]]) -> list[list[int]]:
        hs = [engine.submit(p, SamplingParams(max_new_tokens=new)) for p in prompts]
        return [h.wait().token_ids for h in hs]

    return gen


def llama_round(llm, new: int):
    def gen(prompts: list[list[int]]) -> list[list[int]]:
        outs = []
        for p in prompts:
            toks: list[int] = []
            for t in llm.generate(p, temp=0.0, top_k=1, reset=True):
                toks.append(int(t))
                if len(toks) == new:
                    break
            outs.append(toks)
        return outs

    return gen


# ------------------------------------------------------------------------------------------------ helpers
def read_bandwidth_gbs(threads: int, reps: int = 5) -> float:
    """Best-of-``reps`` GB/s of summing a 512 MiB fp32 tensor (larger than any cache) with ``threads`` threads."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.ones(128 * 1024 * 1024, dtype=torch.float32)
        a.sum()
        best = min(_timed(a.sum) for _ in range(reps))
        return a.numel() * 4 / best / 1e9
    finally:
        torch.set_num_threads(old)


def _timed(fn) -> float:
    t = CLOCK()
    fn()
    return CLOCK() - t


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decode step reads: every linear layer (incl. the LM head), not the embedding table."""
    import torch

    total = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            total += mod.weight.numel() * mod.weight.element_size()
            if mod.bias is not None:
                total += mod.bias.numel() * mod.bias.element_size()
        elif type(mod).__name__ == "Int8Linear":  # tq's int8 kernel: packed int8 rows, scales, row sums, bias
            total += mod.nbytes()
        elif type(mod).__name__ == "Linear" and hasattr(mod, "weight") and callable(mod.weight):  # int8 dynamic
            w = mod.weight()
            total += w.numel() * w.element_size() + w.shape[0] * 4  # int8 rows + one fp32 scale per row
            b = mod.bias()
            if b is not None:
                total += b.numel() * b.element_size()
    return total


def checkpoint(shape: str, path: str | None) -> Path:
    from tq_agents.models.qwen import build_tiny_checkpoint
    from tq_agents.models.qwen._tokenizer import cache_dir

    target = Path(path) if path else cache_dir() / "bench" / f"{shape}-seed0"
    if not (target / "model.safetensors").exists():
        print(f"building random-weight {shape} checkpoint in {target} ...", flush=True)
        build_tiny_checkpoint(target, family="qwen2.5", shape=shape, seed=0)
    return target


def gguf_file(ckpt: Path, qtype: str, workdir: Path) -> Path:
    from _gguf_convert import convert_qwen2

    out = workdir / f"{ckpt.name}-{qtype}.gguf"
    src = ckpt / "model.safetensors"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        t0 = CLOCK()
        convert_qwen2(ckpt, out, qtype=qtype)
        print(f"converted to GGUF {qtype} in {CLOCK() - t0:.1f}s ({out.stat().st_size / 1e6:.0f} MB)", flush=True)
    return out


def best_llama(llama_cpp, path: Path, ctx: int, threads: int):
    """A ``Llama`` with its fastest thread count here (spin barriers suffer badly on a busy machine)."""
    best = None
    for n in sorted({threads, 1}, reverse=True):
        llm = llama_cpp.Llama(str(path), n_ctx=ctx, n_threads=n, n_threads_batch=n, n_batch=512, verbose=False)
        llama_round(llm, 2)([[101, 102, 103]])  # warm-up
        dt = llama_batch1(llm, 8, reps=1, prompt=64)
        if best is None or dt < best[0]:
            best = (dt, llm, n)
        else:
            del llm
    assert best is not None
    best[1].reset()
    return best[1], best[2]


def llama_batch1(llm, steps: int, reps: int = 3, prompt: int = 32) -> float:
    """Seconds per batch-1 decode step of a ``Llama`` (after a ``prompt``-token prompt, best of ``reps``)."""
    best = float("inf")
    for _ in range(reps):
        llm.reset()
        llm.eval(list(range(1000, 1000 + prompt)))
        t = CLOCK()
        for i in range(steps):
            llm.eval([2000 + i])
        best = min(best, (CLOCK() - t) / steps)
    llm.reset()
    return best


def batch1_decode(engine, vocab: int, steps: int, reps: int = 3) -> float:
    """Seconds per batch-1 decode step on the engine (short prompt, prefix cache irrelevant)."""
    import random

    from tq_agents.models._engine import SamplingParams

    rng = random.Random(7)
    prompt = [rng.randrange(100, min(vocab, 150_000)) for _ in range(32)]
    engine.submit(prompt, SamplingParams(max_new_tokens=4)).wait()  # warm
    best = float("inf")
    for _ in range(reps):
        s0 = engine.stats()
        engine.submit(prompt, SamplingParams(max_new_tokens=steps)).wait()
        s1 = engine.stats()
        n = s1["decode_steps"] - s0["decode_steps"]
        best = min(best, (s1["decode_seconds"] - s0["decode_seconds"]) / max(n, 1))
    return best


def compare_dtypes(ckpt: Path, vocab: int, dtypes: list[str], reps: int, prompt_len: int, steps: int) -> None:
    """Prefill tok/s and decode ms/step (batch 1 and 4) per engine dtype, measured interleaved (best of reps)."""
    import random

    from tq_agents.models._engine import Engine, SamplingParams, load_model

    rng = random.Random(11)
    hi = min(vocab, 150_000)
    # one engine alive at a time: each live engine thread owns an OpenMP pool, and more pools than CPUs make
    # libgomp stop spin-waiting (see tq_agents.models._engine.in_fresh_thread), which would slow every engine
    best: dict[str, list[float]] = {d: [0.0, float("inf"), float("inf")] for d in dtypes}
    for d in dtypes:
        e = Engine(load_model(str(ckpt), dtype=d), max_batch_size=4, prefix_cache=False)
        e.submit([101, 102, 103], SamplingParams(max_new_tokens=2)).wait()
        for _ in range(reps):
            prompt = [rng.randrange(100, hi) for _ in range(prompt_len)]
            s0 = e.stats()
            e.submit(prompt, SamplingParams(max_new_tokens=0)).wait()
            s1 = e.stats()
            best[d][0] = max(best[d][0], prompt_len / (s1["prefill_seconds"] - s0["prefill_seconds"]))
            best[d][1] = min(best[d][1], batch1_decode(e, vocab, steps, reps=1))
            s0 = e.stats()
            hs = [
                e.submit([rng.randrange(100, hi) for _ in range(16)], SamplingParams(max_new_tokens=steps))
                for _ in range(4)
            ]
            for h in hs:
                h.wait()
            s1 = e.stats()
            steps4 = s1["decode_steps"] - s0["decode_steps"]
            best[d][2] = min(best[d][2], (s1["decode_seconds"] - s0["decode_seconds"]) / max(steps4, 1))
        e.close()
    print(
        f"precision (best of {reps}, one engine at a time): dtype | prefill tok/s | decode b1 ms | decode b4 ms/step | "
        f"agent turn ({prompt_len * 3} new prompt tokens + 64 decoded) s"
    )
    for d in dtypes:
        pf, b1, b4 = best[d]
        print(f"  {d:5s} | {pf:7.0f} | {b1 * 1000:7.1f} | {b4 * 1000:7.1f} | {prompt_len * 3 / pf + 64 * b1:6.2f}")
    fastest = min(dtypes, key=lambda d: prompt_len * 3 / best[d][0] + 64 * best[d][1])
    print(f"  fastest for prompt-heavy agent turns here: {fastest}", flush=True)


def report(name: str, wall: float, wl: Workload, extra: str = "") -> None:
    print(f"{name:<22} wall {wall:8.2f} s   {wl.generated / wall:8.2f} tok/s aggregate{extra}", flush=True)


# ------------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shape, small workload: a CI smoke run (< 1 min)")
    ap.add_argument("--shape", default="qwen2.5-0.5b")
    ap.add_argument("--checkpoint", default=None, help="use this checkpoint directory instead of building one")
    ap.add_argument("--dtype", default=None, help="tq engine dtype (fp32, bf16, int8; default: the engine default)")
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--prefix", type=int, default=1200)
    ap.add_argument("--task", type=int, default=100)
    ap.add_argument("--followup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--skip-fp32-engine", action="store_true", help="skip the extra fp32 run of the tq engine")
    ap.add_argument("--skip-dtypes", action="store_true", help="skip the fp32/bf16/int8 precision comparison")
    ap.add_argument("--workdir", default=None, help="where GGUF files go (default: next to the checkpoint cache)")
    a = ap.parse_args(argv)
    if a.quick:
        a.shape, a.prefix, a.task, a.followup, a.rounds, a.new = "tiny", 160, 24, 8, 2, 8
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    import torch
    from transformers import AutoModelForCausalLM

    from tq_agents.models._engine import DEFAULT_DTYPE, Engine, in_fresh_thread, load_model

    threads = torch.get_num_threads()
    wl = Workload(a.agents, a.prefix, a.task, a.followup, a.rounds, a.new)
    ckpt = checkpoint(a.shape, a.checkpoint)
    dtype = a.dtype or DEFAULT_DTYPE
    print(
        f"model: {a.shape} random weights ({ckpt}); torch threads {threads}; workload: {wl.agents} agents x "
        f"{wl.rounds} rounds, prefix {wl.prefix} + task {wl.task} (+ history, follow-up {wl.followup}), "
        f"{wl.new} new tokens per turn = {wl.generated} generated tokens",
        flush=True,
    )
    vocab = int(json.loads((ckpt / "config.json").read_text())["vocab_size"])

    # The benchmark's own torch work (bandwidth probe, naive HF generate, llama.cpp) runs in throwaway threads,
    # as an application embedding the engine would keep it off long-lived threads: a long-lived thread that ran
    # one parallel torch op keeps an OpenMP pool, and more pools than CPUs slow every thread's parallel regions
    # (tq_agents.models._engine.in_fresh_thread explains and measures it). Each contender gets the same treatment.
    bw1 = in_fresh_thread(lambda: read_bandwidth_gbs(1))
    bwn = in_fresh_thread(lambda: read_bandwidth_gbs(threads))
    print(f"measured read bandwidth: {bw1:.1f} GB/s (1 thread), {bwn:.1f} GB/s ({threads} threads)", flush=True)
    from tq_agents.models._engine._kernels import int8_kernel_status

    status = int8_kernel_status()
    print(f"int8 linears: {'tq AVX-512 VNNI kernel' if status == 'tq' else f'torch fbgemm ({status})'}", flush=True)

    results: dict[str, float] = {}
    if not a.skip_dtypes:
        compare_dtypes(ckpt, vocab, ["fp32", "bf16", "int8"], 1 if a.quick else 2, 64 if a.quick else 256, 8)

    # (b) tq engine first (its numbers matter most if the run is cut short)
    model = load_model(str(ckpt), dtype=dtype)
    engine = Engine(model, max_batch_size=max(8, wl.agents), name="bench")
    tq_round(engine, 2)([[101, 102, 103]])  # warm-up
    wall, sent = run_workload(wl, vocab, tq_round(engine, wl.new))
    s = engine.stats()
    results["tq"] = wall
    report(
        f"tq engine ({dtype})",
        wall,
        wl,
        f"   prefix-cache hit {s['prefix_hit_rate']:.0%} of {sent} prompt tokens, "
        f"avg decode batch {s['avg_batch']:.2f}",
    )
    print(
        f"  tq internals: prefilled {s['prefill_tokens']} tokens in {s['prefill_seconds']:.1f}s "
        f"({s['prefill_tokens'] / max(s['prefill_seconds'], 1e-9):.0f} tok/s), {s['decode_steps']} decode steps in "
        f"{s['decode_seconds']:.1f}s ({s['decode_seconds'] / max(s['decode_steps'], 1) * 1000:.0f} ms/step)",
        flush=True,
    )
    # batch-1 decode vs read bandwidth, measured side by side in rounds (both drift with the load of this shared
    # machine): each round probes the bandwidth (1 and all threads, the higher counts) right before its decode
    # steps; the reported share is the median of the rounds' shares
    wbytes = in_fresh_thread(lambda m=model: weight_bytes_per_token(m))  # unpacking int8 weights runs parallel ops
    rounds = []
    for _ in range(1 if a.quick else 5):
        probes = [
            (in_fresh_thread(lambda: read_bandwidth_gbs(1, reps=3)), 1),
            (in_fresh_thread(lambda: read_bandwidth_gbs(threads, reps=3)), threads),
        ]
        step_r = batch1_decode(engine, vocab, 8 if a.quick else 24, reps=2)
        bw_r, thr_r = max(probes)
        rounds.append((wbytes / step_r / 1e9 / bw_r, step_r, bw_r, thr_r))
    print(
        "  batch-1 rounds (decode ms/token @ read GB/s = share): "
        + ", ".join(f"{st * 1000:.1f} @ {bw:.1f} = {sh:.0%}" for sh, st, bw, _ in rounds),
        flush=True,
    )
    share, step, bw, bw_thr = sorted(rounds)[len(rounds) // 2]
    gbs = wbytes / step / 1e9
    print(
        f"batch-1 decode: {step * 1000:.1f} ms/token, {wbytes / 1e6:.0f} MB weights/token -> {gbs:.1f} GB/s "
        f"= {share:.0%} of measured {bw:.1f} GB/s ({bw_thr}-thread read bandwidth of the same round; the median "
        f"round of {len(rounds)})",
        flush=True,
    )
    engine.close()
    del engine, model

    if dtype != "fp32" and not a.skip_fp32_engine:  # the engine's own gain, without quantization
        engine = Engine(load_model(str(ckpt), dtype="fp32"), max_batch_size=max(8, wl.agents), name="bench-fp32")
        tq_round(engine, 2)([[101, 102, 103]])
        wall, _ = run_workload(wl, vocab, tq_round(engine, wl.new))
        results["tq-fp32"] = wall
        report("tq engine (fp32)", wall, wl)
        engine.close()
        del engine

    # (a) naive
    if not a.skip_naive:

        def naive() -> float:
            hf = AutoModelForCausalLM.from_pretrained(str(ckpt), dtype=torch.float32).eval()
            naive_round(hf, 2)([[101, 102, 103]])
            return run_workload(wl, vocab, naive_round(hf, wl.new))[0]

        wall = in_fresh_thread(naive)
        results["naive"] = wall
        report("naive HF generate (fp32)", wall, wl)

    # (c) llama.cpp
    llama_reason = None
    if a.skip_llama:
        llama_reason = "--skip-llama given"
    else:
        try:
            import llama_cpp
        except ImportError as e:
            llama_reason = f"llama_cpp is not importable ({e}); install the `bench` extra"
    if llama_reason:
        print(f"llama.cpp: skipped: {llama_reason}", flush=True)
    else:
        workdir = Path(a.workdir) if a.workdir else ckpt.parent
        if not os.access(workdir, os.W_OK):
            workdir = Path(tempfile.mkdtemp(prefix="tq-gguf-"))
        for q in ("F16", "Q8_0"):
            path = gguf_file(ckpt, q, workdir)
            ctx = wl.prefix + wl.task + wl.rounds * (wl.new + wl.followup) + 64

            def llama(path: Path = path, ctx: int = ctx) -> tuple[float, int, float]:
                llm, n_thr = best_llama(llama_cpp, path, ctx, threads)
                wall = run_workload(wl, vocab, llama_round(llm, wl.new))[0]
                return wall, n_thr, llama_batch1(llm, 8 if a.quick else 24)

            wall, n_thr, step = in_fresh_thread(llama)
            results[f"llama-{q}"] = wall
            report(f"llama.cpp {q}", wall, wl, f"   n_threads={n_thr}")
            size = path.stat().st_size  # tied embeddings: the LM head is the embedding table, read once per token
            print(
                f"  llama.cpp {q} batch-1 decode (for reference): {step * 1000:.1f} ms/token, GGUF {size / 1e6:.0f} "
                f"MB/token -> {size / step / 1e9:.1f} GB/s = {size / step / 1e9 / bw:.0%} of the {bw:.1f} GB/s above",
                flush=True,
            )

    def speedup(other: str) -> str:
        if other not in results:
            return "n/a (not run)"
        return f"{results[other] / results['tq']:.2f}"

    if "tq-fp32" in results and "naive" in results:
        print(f"speedup tq-fp32/naive (same precision as naive): {results['naive'] / results['tq-fp32']:.2f}")
    print(f"speedup tq/naive: {speedup('naive')}")
    print(f"speedup tq/llama.cpp-q8: {speedup('llama-Q8_0')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
