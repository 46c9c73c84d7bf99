"""Sandbox latency and throughput: fresh container vs warm pool vs bubblewrap.

    python benchmarks/sandbox.py            # 15 latency samples, 50 runs in a row per mode
    python benchmarks/sandbox.py --quick    # a few seconds: 3 samples, 10 runs
    python benchmarks/sandbox.py --json     # also print one JSON line with every figure

Prints the median latency of a trivial ``print(1)`` run for each mode, the throughput of N runs in a row
(sequential, and with 4 concurrent callers), and ratios measured within this one process. The container
modes need a Docker-API engine (DOCKER_HOST; `eval "$(bash scripts/engine.sh start)"`) and the image
(`bash sandbox/build_image.sh`); without one they are reported as skipped, or the script exits 2 when
``--require-engine`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tq_agents.sandbox import BwrapSandbox, DockerSandbox, SandboxLimits

from tq_agents.errors import SandboxError

LIMITS = SandboxLimits(timeout_s=20.0)


def _one(sb: Any) -> float:
    t0 = time.perf_counter()
    r = sb.run("print(1)")
    elapsed = time.perf_counter() - t0
    if r.stdout != "1\n" or r.exit_code != 0:
        raise SystemExit(f"{sb.name}: unexpected result {r}")
    return elapsed


def _wait_pool(sb: DockerSandbox, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while sb._pool.qsize() < sb.pool_size and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # let the engine finish removing the previous container


def measure(name: str, sb: Any, samples: int, runs: int) -> dict[str, float]:
    """Median latency over ``samples`` single runs, then throughput of ``runs`` in a row (1 and 4 callers)."""
    pooled = isinstance(sb, DockerSandbox) and sb.pool_size > 0
    _one(sb)  # warm-up (first container start, page cache)
    lat = []
    for _ in range(samples):
        if pooled:
            _wait_pool(sb)  # latency with a warm container ready, as a user would see between turns
        lat.append(_one(sb))
    if pooled:
        _wait_pool(sb)
    t0 = time.perf_counter()
    for _ in range(runs):
        _one(sb)
    seq = runs / (time.perf_counter() - t0)
    if pooled:
        _wait_pool(sb)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda _: _one(sb), range(runs)))
    conc = runs / (time.perf_counter() - t0)
    row = {"median_ms": statistics.median(lat) * 1000, "min_ms": min(lat) * 1000, "seq_per_s": seq, "conc4_per_s": conc}
    print(
        f"{name:<16} median {row['median_ms']:8.1f} ms   min {row['min_ms']:8.1f} ms   "
        f"{runs} in a row: {seq:6.2f} runs/s   4 concurrent: {conc:6.2f} runs/s",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few seconds: 3 samples, 10 runs per mode")
    ap.add_argument("--samples", type=int, default=None, help="latency samples per mode (default 15, quick 3)")
    ap.add_argument("--runs", type=int, default=None, help="runs in a row for throughput (default 50, quick 10)")
    ap.add_argument("--pool-size", type=int, default=4, help="warm pool size (default 4)")
    ap.add_argument("--require-engine", action="store_true", help="exit 2 when the container engine is unusable")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with all figures")
    args = ap.parse_args(argv)
    samples = args.samples or (3 if args.quick else 15)
    runs = args.runs or (10 if args.quick else 50)

    print(f"sandbox benchmark: print(1), {samples} latency samples, {runs} runs in a row per mode", flush=True)
    rows: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    for name, make in (
        ("fresh container", lambda: DockerSandbox(LIMITS)),
        ("warm pool", lambda: DockerSandbox(LIMITS, pool_size=args.pool_size)),
        ("bwrap", lambda: BwrapSandbox(LIMITS)),
    ):
        try:
            sb = make()
        except SandboxError as e:
            skipped[name] = str(e).splitlines()[0]
            print(f"{name:<16} skipped: {skipped[name]}", flush=True)
            continue
        try:
            rows[name] = measure(name, sb, samples, runs)
        finally:
            sb.close()

    fresh, warm, bw = rows.get("fresh container"), rows.get("warm pool"), rows.get("bwrap")
    ratios = {}
    if fresh and warm:
        ratios["fresh/warm latency"] = fresh["median_ms"] / warm["median_ms"]
        ratios["warm/fresh throughput"] = warm["seq_per_s"] / fresh["seq_per_s"]
    if fresh and bw:
        ratios["fresh/bwrap latency"] = fresh["median_ms"] / bw["median_ms"]
    for k, v in ratios.items():
        print(f"ratio {k}: {v:.2f}x")
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratios, "skipped": skipped}))
    if args.require_engine and ("fresh container" in skipped or "warm pool" in skipped or "bwrap" in skipped):
        print("error: --require-engine given and a sandbox is unavailable", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
