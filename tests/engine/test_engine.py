"""Engine behaviour on a real (random-weight) Qwen2 model: batching, prefix cache, cancellation, priorities."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from tq_agents.errors import ModelRequestError
from tq_agents.models._engine import GenerationResult, SamplingParams

pytestmark = pytest.mark.timeout(120)


def _hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(torch.tensor([prompt]), max_new_tokens=n, min_new_tokens=n, do_sample=False)
    return out[0, len(prompt) :].tolist()


def _run(handles) -> list[GenerationResult]:
    async def main():
        return [await h.result() for h in handles]

    return asyncio.run(main())


def test_single_request_matches_hf_generate(make_engine, tiny_model, rand_prompt):
    eng = make_engine(max_batch_size=2, prefill_chunk=16)
    prompt = rand_prompt(40, seed=1)  # 40 tokens with chunk 16: three prefill chunks
    res = eng.submit(prompt, SamplingParams(max_new_tokens=12)).wait(60)
    assert res.finish_reason == "length"
    assert res.token_ids == _hf_greedy(tiny_model, prompt, 12)
    assert res.prompt_tokens == 40


def test_batched_equals_one_by_one_greedy(make_engine, rand_prompt):
    prompts = [rand_prompt(n, seed=10 + i) for i, n in enumerate((3, 50, 170, 21, 90))]
    lengths = (16, 9, 20, 5, 14)  # different lengths: sequences leave and join mid-batch
    serial = make_engine(max_batch_size=1, prefix_cache=False)
    one_by_one = [
        serial.submit(p, SamplingParams(max_new_tokens=n)).wait(60).token_ids
        for p, n in zip(prompts, lengths, strict=True)
    ]
    batched_eng = make_engine(max_batch_size=4, prefill_chunk=32, prefix_cache=False)
    handles = [batched_eng.submit(p, SamplingParams(max_new_tokens=n)) for p, n in zip(prompts, lengths, strict=True)]
    batched = [r.token_ids for r in _run(handles)]
    assert batched == one_by_one
    assert batched_eng.stats()["max_batch"] >= 3  # the requests really shared decode steps
    assert [len(t) for t in batched] == list(lengths)


def test_prefix_cache_hit_equals_cold_run(make_engine, rand_prompt):
    system = rand_prompt(120, seed=3)
    task_a, task_b = rand_prompt(15, seed=4), rand_prompt(15, seed=5)
    cold = make_engine(prefix_cache=False)
    want_b = cold.submit(system + task_b, SamplingParams(max_new_tokens=10)).wait(60).token_ids

    eng = make_engine(max_batch_size=2)
    first = eng.submit(system + task_a, SamplingParams(max_new_tokens=10)).wait(60)
    assert first.cached_prompt_tokens == 0
    hit = eng.submit(system + task_b, SamplingParams(max_new_tokens=10)).wait(60)
    assert hit.cached_prompt_tokens == 120  # exactly the shared system prefix
    assert hit.token_ids == want_b
    # an agent's growing history: previous prompt + its answer + a new user turn hits everything before it
    follow = system + task_b + hit.token_ids + rand_prompt(7, seed=6)
    want_follow = cold.submit(follow, SamplingParams(max_new_tokens=8)).wait(60).token_ids
    res = eng.submit(follow, SamplingParams(max_new_tokens=8)).wait(60)
    assert res.cached_prompt_tokens == len(system + task_b + hit.token_ids) - 1  # last answer token has no KV yet
    assert res.token_ids == want_follow
    s = eng.stats()
    assert s["cached_prompt_tokens"] == 120 + res.cached_prompt_tokens
    assert 0 < s["prefix_hit_rate"] < 1


def test_history_rewrite_reuses_true_common_prefix(make_engine, rand_prompt):
    eng = make_engine()
    base = rand_prompt(60, seed=7)
    old = base + rand_prompt(30, seed=8)  # e.g. a turn with reasoning that Qwen3's template drops later
    eng.submit(old, SamplingParams(max_new_tokens=4)).wait(60)
    rewritten = base + rand_prompt(25, seed=9)
    res = eng.submit(rewritten, SamplingParams(max_new_tokens=6)).wait(60)
    lcp = next(i for i, (a, b) in enumerate(zip(old, rewritten, strict=False)) if a != b)
    assert res.cached_prompt_tokens == lcp
    cold = make_engine(prefix_cache=False).submit(rewritten, SamplingParams(max_new_tokens=6)).wait(60)
    assert res.token_ids == cold.token_ids


def test_cancellation_frees_the_slot(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=1)
    long = eng.submit(rand_prompt(10, seed=11), SamplingParams(max_new_tokens=100_000))
    waiting = eng.submit(rand_prompt(10, seed=12), SamplingParams(max_new_tokens=5))

    async def main():
        got = []
        async for tok in long:
            got.append(tok)
            if len(got) == 3:
                long.cancel()
        return got, await long.result(), await waiting.result()

    streamed, res_long, res_wait = asyncio.run(main())
    assert res_long.finish_reason == "cancelled"
    assert res_long.token_ids[:3] == streamed[:3] and len(res_long.token_ids) < 100_000
    assert res_wait.finish_reason == "length" and len(res_wait.token_ids) == 5  # got the freed slot
    assert eng.stats()["running"] == 0 and eng.stats()["cancelled"] == 1


def test_cancel_while_queued(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=1)
    blocker = eng.submit(rand_prompt(8, seed=13), SamplingParams(max_new_tokens=100_000))
    queued = eng.submit(rand_prompt(8, seed=14), SamplingParams(max_new_tokens=5))
    queued.cancel()
    res = queued.wait(10)
    assert res.finish_reason == "cancelled" and res.token_ids == []
    blocker.cancel()
    assert blocker.wait(30).finish_reason == "cancelled"


def test_memory_budget_evicts_lru(make_engine, rand_prompt):
    probe = make_engine()
    budget = probe.kv.bytes_per_token() * 250  # room for two ~100-token entries, not three
    eng = make_engine(cache_budget_bytes=budget)
    prompts = [rand_prompt(100, seed=20 + i) for i in range(3)]
    for p in prompts:
        eng.submit(p, SamplingParams(max_new_tokens=2)).wait(60)
    s = eng.stats()
    assert s["cache_evictions"] >= 1
    assert s["cache_bytes"] <= budget
    # the oldest entry was evicted (cold), the newest is still cached
    assert eng.submit(prompts[0], SamplingParams(max_new_tokens=1)).wait(60).cached_prompt_tokens == 0
    assert eng.submit(prompts[2], SamplingParams(max_new_tokens=1)).wait(60).cached_prompt_tokens == 99


def test_priorities_reorder_admission(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=1)
    blocker = eng.submit(rand_prompt(8, seed=30), SamplingParams(max_new_tokens=100_000))
    next(iter(blocker.iter_tokens()))  # the blocker holds the only slot
    low = [eng.submit(rand_prompt(8, seed=31 + i), SamplingParams(max_new_tokens=2), priority=0) for i in range(2)]
    high = eng.submit(rand_prompt(8, seed=40), SamplingParams(max_new_tokens=2), priority=10)
    blocker.cancel()
    for h in [*low, high]:
        assert h.wait(60).finish_reason == "length"
    order = list(eng.admission_log)
    assert order == [blocker.request_id, high.request_id, low[0].request_id, low[1].request_id]


def test_stop_token_and_per_request_params_in_one_batch(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=4)
    prompt = rand_prompt(12, seed=50)
    free = eng.submit(prompt, SamplingParams(max_new_tokens=10)).wait(60).token_ids
    stop_at = free[4]
    first_idx = free.index(stop_at)
    handles = [
        eng.submit(prompt, SamplingParams(max_new_tokens=10, stop_token_ids=(stop_at,))),
        eng.submit(prompt, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)),
        eng.submit(prompt, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7, top_k=5, top_p=0.9)),
        eng.submit(prompt, SamplingParams(max_new_tokens=3)),
    ]
    stopped, sampled, filtered, short = _run(handles)
    assert stopped.finish_reason == "stop" and stopped.token_ids == free[: first_idx + 1]
    assert short.token_ids == free[:3] and short.finish_reason == "length"
    assert len(sampled.token_ids) == 10 and len(filtered.token_ids) == 10
    again = eng.submit(prompt, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7)).wait(60)
    assert again.token_ids == sampled.token_ids  # a seed makes sampling reproducible, batched or not


class _AllowOnly:
    """A TokenConstraint that allows a fixed id set and finishes after ``n`` tokens."""

    def __init__(self, allowed: set[int], n: int) -> None:
        self.allowed, self.n, self.seen = allowed, n, []

    def apply(self, logits: torch.Tensor) -> None:
        assert logits.dim() == 1 and logits.dtype == torch.float32
        keep = torch.tensor(sorted(self.allowed))
        saved = logits[keep].clone()
        logits.fill_(float("-inf"))
        logits[keep] = saved

    def advance(self, token_id: int) -> None:
        self.seen.append(token_id)

    def is_finished(self) -> bool:
        return len(self.seen) >= self.n


def test_constraint_masks_and_finishes_inside_a_batch(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=3)
    allowed = {5, 77, 300}
    c = _AllowOnly(allowed, n=6)
    free = eng.submit(rand_prompt(9, seed=60), SamplingParams(max_new_tokens=20))
    constrained = eng.submit(rand_prompt(9, seed=61), SamplingParams(max_new_tokens=20), constraint=c)
    sampled_c = _AllowOnly(allowed, n=4)
    sampled = eng.submit(
        rand_prompt(9, seed=62), SamplingParams(max_new_tokens=20, temperature=1.5, seed=1), constraint=sampled_c
    )
    r_free, r_c, r_s = _run([free, constrained, sampled])
    assert r_c.finish_reason == "stop" and len(r_c.token_ids) == 6 and set(r_c.token_ids) <= allowed
    assert c.seen == r_c.token_ids
    assert r_s.finish_reason == "stop" and set(r_s.token_ids) <= allowed and len(r_s.token_ids) == 4
    assert r_free.finish_reason == "length" and len(r_free.token_ids) == 20


def test_dead_end_constraint_is_an_error_not_a_hang(make_engine, rand_prompt):
    class Nothing(_AllowOnly):
        def apply(self, logits):
            logits.fill_(float("-inf"))

    eng = make_engine()
    res = eng.submit(rand_prompt(5, seed=70), SamplingParams(max_new_tokens=5), constraint=Nothing(set(), 1)).wait(30)
    assert res.finish_reason == "error" and "constraint" in (res.error or "")
    assert eng.submit(rand_prompt(5, seed=71), SamplingParams(max_new_tokens=2)).wait(30).finish_reason == "length"


def test_submit_from_many_threads_and_loops(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=4)
    results: dict[int, list[int]] = {}

    def worker(i: int) -> None:
        async def go():
            h = eng.submit(rand_prompt(10, seed=80 + i), SamplingParams(max_new_tokens=6))
            toks = [t async for t in h]
            assert toks == (await h.result()).token_ids
            return toks

        results[i] = asyncio.run(go())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [0, 1, 2, 3] and all(len(v) == 6 for v in results.values())


def test_bad_requests_raise_clear_errors(make_engine):
    eng = make_engine()
    with pytest.raises(ModelRequestError, match="empty"):
        eng.submit([], SamplingParams())
    with pytest.raises(ModelRequestError, match="outside"):
        eng.submit([1, 10**8], SamplingParams())
    with pytest.raises(ModelRequestError, match="top_p"):
        eng.submit([1], SamplingParams(top_p=0.0))
    with pytest.raises(ModelRequestError, match="max_new_tokens"):
        eng.submit([1], SamplingParams(max_new_tokens=-1))
    eng.close()
    with pytest.raises(ModelRequestError, match="closed"):
        eng.submit([1], SamplingParams())


def test_qwen3_batched_equals_hf(tiny_model_qwen3, rand_prompt):
    from tq_agents.models._engine import Engine

    prompts = [rand_prompt(n, seed=90 + n) for n in (7, 40, 19)]
    with Engine(tiny_model_qwen3, max_batch_size=3, prefill_chunk=16) as eng:
        got = [r.token_ids for r in _run([eng.submit(p, SamplingParams(max_new_tokens=8)) for p in prompts])]
    assert got == [_hf_greedy(tiny_model_qwen3, p, 8) for p in prompts]


def test_long_prefill_does_not_stall_running_decodes(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=2, prefill_chunk=16)
    running = eng.submit(rand_prompt(5, seed=95), SamplingParams(max_new_tokens=100_000))
    next(iter(running.iter_tokens()))
    before = len(running._tokens)
    long = eng.submit(rand_prompt(200, seed=96), SamplingParams(max_new_tokens=1))  # 13 chunks of 16
    assert long.wait(60).finish_reason == "length"
    during = len(running._tokens) - before
    running.cancel()
    assert running.wait(30).finish_reason == "cancelled"
    assert during >= 12  # a decode step ran after every prefill chunk


def test_prefill_only_request_warms_the_cache(make_engine, rand_prompt):
    eng = make_engine()
    system = rand_prompt(80, seed=97)
    warm = eng.submit(system, SamplingParams(max_new_tokens=0)).wait(60)
    assert warm.finish_reason == "length" and warm.token_ids == []
    hit = eng.submit(system + rand_prompt(5, seed=98), SamplingParams(max_new_tokens=3)).wait(60)
    assert hit.cached_prompt_tokens == 80


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
@pytest.mark.parametrize("which", ["qwen2", "qwen3"])
def test_fast_decode_path_matches_transformers_forward(
    which, dtype, tiny_model, tiny_model_qwen3, tiny_checkpoint, tiny_checkpoint_qwen3, rand_prompt
):
    """The lean decode forward (_fastdecode) gives the HF forward's logits and tokens, rows of unequal length.
    int8: the same int8 linears, but the step fuses norms/SwiGLU/residuals into the kernel calls and (with tq's
    kernel) uses tq's attention, so the logits agree to rounding of the quantized activations."""
    from tq_agents.models._engine import Engine, load_model
    from tq_agents.models._engine._fastdecode import FastDecoder, supports
    from tq_agents.models._engine._kv import SlotKV

    if dtype == "fp32":
        model = tiny_model if which == "qwen2" else tiny_model_qwen3
    else:
        model = load_model(str(tiny_checkpoint if which == "qwen2" else tiny_checkpoint_qwen3), dtype="int8")
    assert supports(model)
    cfg = model.config
    kv = SlotKV(
        layers=cfg.num_hidden_layers,
        slots=3,
        kv_heads=cfg.num_key_value_heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
        dtype=torch.float32,
    )
    kv.buf.normal_(generator=torch.Generator().manual_seed(0))
    pos = torch.tensor([5, 40, 17])
    ids = torch.tensor([7, 300, 45])
    with torch.inference_mode():
        kv.plan_decode(3, pos)
        mask = (torch.arange(41)[None, :] <= pos[:, None]).view(3, 1, 1, 41)
        masks = {k: mask for k in set(getattr(cfg, "layer_types", None) or ["full_attention"])}
        ref = (
            model(
                input_ids=ids.view(3, 1),
                position_ids=pos.view(3, 1),
                attention_mask=masks,
                past_key_values=kv,
                use_cache=True,
            )
            .logits[:, -1]
            .float()
        )
        kv.plan_decode(3, pos)
        got = FastDecoder(model).decode(ids, pos, kv)
    if dtype == "fp32":
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    else:
        rel = float((got - ref).norm() / ref.norm())
        assert rel < 1e-2
        assert torch.equal(got.argmax(-1), ref.argmax(-1))

    prompts = [rand_prompt(n, seed=70 + n) for n in (9, 33, 4)]
    params = SamplingParams(max_new_tokens=10)
    outs = []
    for fast in (True, False):
        with Engine(model, max_batch_size=3, fast_decode=fast) as eng:
            assert (eng._fast is not None) == fast
            outs.append([r.token_ids for r in _run([eng.submit(p, params) for p in prompts])])
    assert outs[0] == outs[1]


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "int8"])
@pytest.mark.parametrize("which", ["qwen2", "qwen3"])
def test_scripted_decode_step_equals_python_step(which, dtype, tiny_checkpoint, tiny_checkpoint_qwen3):
    """The TorchScript decode step (the default) computes what the same module computes run eagerly, at every precision,
    for one row and for rows of unequal length."""
    from tq_agents.models._engine import load_model
    from tq_agents.models._engine._fastdecode import FastDecoder
    from tq_agents.models._engine._kv import SlotKV

    model = load_model(str(tiny_checkpoint if which == "qwen2" else tiny_checkpoint_qwen3), dtype=dtype)
    scripted, python = FastDecoder(model), FastDecoder(model, script=False)
    assert scripted.scripted is not None, "TorchScript failed on this torch: see the warning logged"
    assert python.scripted is None
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    for pos in (torch.tensor([23]), torch.tensor([5, 40, 17])):
        b = int(pos.shape[0])
        kv = SlotKV(layers=cfg.num_hidden_layers, slots=3, kv_heads=cfg.num_key_value_heads, head_dim=head_dim,
                    dtype=kv_dtype)  # fmt: skip
        kv.buf.normal_(generator=torch.Generator().manual_seed(1))
        ids = torch.tensor([7, 300, 45][:b])
        with torch.inference_mode():
            kv.plan_decode(b, pos)
            want = python.decode(ids, pos, kv)
            kv.plan_decode(b, pos)
            got = scripted.decode(ids, pos, kv)
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fast_decoder_logs_and_runs_python_when_scripting_fails(tiny_model, monkeypatch, caplog):
    import logging

    from tq_agents.models._engine import _scripted
    from tq_agents.models._engine._fastdecode import FastDecoder

    def broken(fd):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(_scripted, "script_step", broken)
    with caplog.at_level(logging.WARNING, logger="tq_agents.models._engine._fastdecode"):
        fd = FastDecoder(tiny_model)
    assert fd.scripted is None
    assert "TorchScript failed: RuntimeError: no TorchScript here" in caplog.text


def test_in_fresh_thread_returns_raises_and_leaves_the_caller_thread():
    import threading

    from tq_agents.errors import ModelUnavailableError
    from tq_agents.models._engine import in_fresh_thread

    caller = threading.get_ident()
    assert in_fresh_thread(threading.get_ident) != caller
    assert in_fresh_thread(lambda: 41 + 1) == 42
    with pytest.raises(ModelUnavailableError, match="boom"):
        in_fresh_thread(lambda: (_ for _ in ()).throw(ModelUnavailableError("boom")))


def test_idle_loop_thread_exits_and_the_next_submit_restarts_it(tiny_model, rand_prompt):
    """An idle engine gives its loop thread (and that thread's OpenMP pool) back; the next request starts a new
    one and gets the same tokens."""
    import time

    from tq_agents.models._engine import Engine

    prompt = rand_prompt(12, seed=5)
    params = SamplingParams(max_new_tokens=6)
    with Engine(tiny_model, idle_exit_s=0.2) as eng:
        first = eng.submit(prompt, params).wait(60)
        deadline = time.monotonic() + 10
        while eng._thread is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng._thread is None, "the idle loop thread did not exit"
        second = eng.submit(prompt, params).wait(60)
        assert second.token_ids == first.token_ids and second.finish_reason == first.finish_reason
        assert eng.stats()["loop_starts"] == 2
    with pytest.raises(ValueError, match="idle_exit_s"):
        Engine(tiny_model, idle_exit_s=0)


# ---- regressions from an audit of the engine -------------------------------------------------------------------


def test_moving_a_short_sequence_keeps_every_channel_of_its_kv(make_engine, rand_prompt):
    # SlotKV.move sliced the head_dim axis instead of the positions: a sequence shorter than head_dim tokens
    # that moved slot (its neighbour finished) kept stale channels of the slot's previous occupant
    from tq_agents.models._engine._kv import SlotKV

    kv = SlotKV(layers=1, slots=2, kv_heads=1, head_dim=8, dtype=torch.float32, capacity=16)
    kv.buf[:, :, 1, :, :4] = 1.0
    kv.lens[1] = 4
    kv.move(1, 0)
    assert bool((kv.buf[:, :, 0, :, :4] == 1.0).all()) and bool((kv.buf[:, :, 0, :, 4:] == 0.0).all())
    assert list(kv.lens) == [4, 0]

    a, b = rand_prompt(4, seed=1), rand_prompt(6, seed=2)
    for params in (SamplingParams(max_new_tokens=8), SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)):
        alone = make_engine(max_batch_size=1, prefix_cache=False).submit(b, params).wait(60).token_ids
        eng = make_engine(max_batch_size=2, prefix_cache=False)
        first = eng.submit(a, SamplingParams(max_new_tokens=3))  # finishes first: b moves from slot 1 to 0
        second = eng.submit(b, params)
        first.wait(60)
        assert second.wait(60).token_ids == alone


def test_a_constraint_failing_in_is_finished_ends_only_its_request(make_engine, rand_prompt):
    class Boom:
        def apply(self, logits):
            pass

        def advance(self, token):
            pass

        def is_finished(self):
            raise RuntimeError("grammar bug")

    eng = make_engine(max_batch_size=4)
    neighbour = eng.submit(rand_prompt(10, seed=1), SamplingParams(max_new_tokens=30))
    next(iter(neighbour.iter_tokens()))  # decoding
    bad = eng.submit(rand_prompt(10, seed=2), SamplingParams(max_new_tokens=30), constraint=Boom())
    r_bad, r_nb = bad.wait(60), neighbour.wait(60)
    assert r_bad.finish_reason == "error" and "grammar bug" in (r_bad.error or "")
    assert r_nb.finish_reason == "length" and len(r_nb.token_ids) == 30 and r_nb.error is None
    assert eng.stats()["errors"] == 1


def test_submit_racing_close_is_refused_not_left_hanging(make_engine, rand_prompt):
    # a submit that raced close() (here: close() runs while submit reads the prompt) queued its request after the
    # loop had drained the queue and left: the handle never finished. It is now refused.
    eng = make_engine(max_batch_size=1)
    assert eng.submit(rand_prompt(4, seed=1), SamplingParams(max_new_tokens=2)).wait(60).finish_reason == "length"

    class ClosesWhileRead:
        def __iter__(self):
            eng.close()
            return iter(rand_prompt(4, seed=2))

    with pytest.raises(ModelRequestError, match="engine is closed"):
        eng.submit(ClosesWhileRead(), SamplingParams(max_new_tokens=2))  # type: ignore[arg-type]
    assert eng.stats()["queued"] == 0


def test_an_oversized_insert_keeps_the_shorter_cached_prefix(make_engine, rand_prompt):
    probe = make_engine()
    eng = make_engine(cache_budget_bytes=probe.kv.bytes_per_token() * 150)  # 100 tokens fit, 200 do not
    system = rand_prompt(100, seed=1)
    eng.submit(system, SamplingParams(max_new_tokens=0)).wait(60)
    assert (
        eng.submit(system + rand_prompt(100, seed=2), SamplingParams(max_new_tokens=2)).wait(60).cached_prompt_tokens
        == 100
    )
    assert (
        eng.submit(system + rand_prompt(5, seed=3), SamplingParams(max_new_tokens=2)).wait(60).cached_prompt_tokens
        == 100
    )


def test_stats_count_cancelled_queued_and_closed_requests_as_finished(make_engine, rand_prompt):
    eng = make_engine(max_batch_size=1)
    blocker = eng.submit(rand_prompt(8, seed=1), SamplingParams(max_new_tokens=100_000))
    next(iter(blocker.iter_tokens()))
    queued = [eng.submit(rand_prompt(8, seed=2 + i), SamplingParams(max_new_tokens=5)) for i in range(3)]
    for h in queued:
        h.cancel()
    blocker.cancel()
    blocker.wait(30)
    s = eng.stats()
    assert s["requests"] == s["finished"] == s["cancelled"] == 4 and s["queued"] == s["running"] == 0
    eng2 = make_engine(max_batch_size=1)
    blocker = eng2.submit(rand_prompt(8, seed=1), SamplingParams(max_new_tokens=100_000))
    next(iter(blocker.iter_tokens()))
    waiting = [eng2.submit(rand_prompt(8, seed=9 + i), SamplingParams(max_new_tokens=5)) for i in range(2)]
    eng2.close()
    assert [h.wait(5).finish_reason for h in [blocker, *waiting]] == ["cancelled"] * 3
    s = eng2.stats()
    assert s["requests"] == s["finished"] == s["cancelled"] == 3
