"""Section "decision": in-process latency of evaluate (indexed) beside evaluate_linear (scan).

For policies of 10, 1,000 and 10,000 generated routes, compiled once, a fixed set of 1,000
generated calls (hits and misses, some anonymous, some before the CRM lookup) is decided
over and over. Each call's latency is the median of several batch means (a batch runs the
same call `reps` times under one perf_counter_ns pair, with the GC off, as timeit does);
the table gives the median and p99 of those per-call latencies.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence

from bench import Row, log, percentile
from bench.gen import Call, facts_of, generate_calls, generate_policy
from router.policy.compiler import compile_policy
from router.policy.loader import lint_texts
from router.runtime import phone
from router.runtime.evaluator import evaluate, evaluate_linear
from router.runtime.facttypes import Facts
from router.runtime.model import Decision, Policy

SIZES = (10, 1_000, 10_000)
CALLS = 1_000
TARGET_US = 5.0
BATCH_NS = 50_000  # aim each batch at >= 50 µs so timer overhead stays < 0.2 %
BATCHES = 7

Evaluate = Callable[[Policy, Facts], Decision]


def per_call_ns(fn: Evaluate, policy: Policy, facts: Sequence[Facts], *, batches: int) -> list[float]:
    """Per call: the median over `batches` rounds of the mean of `reps` back-to-back calls."""
    start = time.perf_counter_ns()
    for f in facts:
        fn(policy, f)
    estimate = max(1, (time.perf_counter_ns() - start) // len(facts))
    reps = max(1, BATCH_NS // estimate)
    means: list[list[float]] = [[] for _ in facts]
    clock = time.perf_counter_ns
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(batches):
            for i, f in enumerate(facts):
                t0 = clock()
                for _ in range(reps):
                    fn(policy, f)
                means[i].append((clock() - t0) / reps)
    finally:
        if enabled:
            gc.enable()
    return [statistics.median(m) for m in means]


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f}" if ns < 100_000 else f"{ns / 1000:.0f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def new_caller_ns(
    policy: Policy, calls: Sequence[Call], facts: Sequence[Facts], *, rounds: int
) -> list[float]:
    """Per call, the median over `rounds` of one shot at normalise(caller) + normalise(dialled)
    + evaluate, with the number caches emptied before each round: every caller never seen
    (the dialled lines, a few, are warmed again). Country and type are computed when, and
    only when, the policy asks."""
    out: list[list[float]] = [[] for _ in facts]
    clock = time.perf_counter_ns
    normalise = phone.normalise
    enabled = gc.isenabled()
    for _ in range(rounds):
        phone.clear_caches()
        for c in calls:
            if c.dialled:
                normalise(c.dialled)
        gc.disable()
        try:
            for i, (c, f) in enumerate(zip(calls, facts, strict=True)):
                caller, dialled = c.caller or "", c.dialled or ""
                t0 = clock()
                normalise(caller)
                normalise(dialled)
                evaluate(policy, f)
                out[i].append(float(clock() - t0))
        finally:
            if enabled:
                gc.enable()
    return [statistics.median(m) for m in out]


def bench_size(routes: int) -> list[Row]:
    gen = generate_policy(routes)
    t0 = time.perf_counter()
    loaded = lint_texts([(f"gen-{routes}.yaml", gen.text)])
    load_s = time.perf_counter() - t0
    assert loaded.policy is not None, [str(p) for p in loaded.errors]
    t0 = time.perf_counter()
    policy = compile_policy(loaded.docs, version=loaded.version)
    compile_s = time.perf_counter() - t0
    calls = generate_calls(gen, CALLS)
    facts = [facts_of(c) for c in calls]

    indexed_decisions = [evaluate(policy, f) for f in facts]
    linear_decisions = [evaluate_linear(policy, f) for f in facts]
    agree = sum(
        (a.route and a.route.id, a.needs_crm) == (b.route and b.route.id, b.needs_crm)
        for a, b in zip(indexed_decisions, linear_decisions, strict=True)
    )
    hits = sum(d.route is not None for d in indexed_decisions)
    pending = sum(d.needs_crm for d in indexed_decisions)
    anonymous = sum(f.caller is None for f in facts)

    log(f"  {routes} routes: timing evaluate")
    indexed = per_call_ns(evaluate, policy, facts, batches=BATCHES)
    log(f"  {routes} routes: timing evaluate_linear")
    linear = per_call_ns(evaluate_linear, policy, facts, batches=BATCHES if routes <= 1000 else 3)

    log(f"  {routes} routes: timing never-seen callers")
    fresh = new_caller_ns(policy, calls, facts, rounds=BATCHES)
    i_med, l_med = statistics.median(indexed), statistics.median(linear)
    i_p99, l_p99 = percentile(indexed, 99), percentile(linear, 99)
    case = f"{routes:,} routes"
    return [
        Row("decision", case, "load: parse + schema + checks + compile", _ms(load_s)),
        Row("decision", case, "compile_policy alone", _ms(compile_s)),
        Row(
            "decision",
            case,
            "calls: routed / default / need CRM / anonymous; indexed = linear",
            f"{hits - pending} / {len(facts) - hits} / {pending} / {anonymous}; {agree}/{len(facts)}",
            f"{len(facts)}/{len(facts)}",
            agree == len(facts),
        ),
        Row(
            "decision",
            case,
            "median µs: indexed / linear (speed-up)",
            f"{_us(i_med)} / {_us(l_med)} (×{l_med / i_med:.1f})",
            f"indexed ≤ {TARGET_US:g}",
            i_med <= TARGET_US * 1000,
        ),
        Row(
            "decision",
            case,
            "p99 µs: indexed / linear (speed-up)",
            f"{_us(i_p99)} / {_us(l_p99)} (×{l_p99 / i_p99:.1f})",
        ),
        Row(
            "decision",
            case,
            "median / p99 µs indexed, every caller never seen (normalise + country + evaluate)",
            f"{_us(statistics.median(fresh))} / {_us(percentile(fresh, 99))}",
            f"median ≤ {TARGET_US:g}",
            statistics.median(fresh) <= TARGET_US * 1000,
        ),
    ]


def run(sizes: Sequence[int] = SIZES) -> list[Row]:
    rows: list[Row] = []
    for routes in sizes:
        log(f"  {routes} routes: generating and loading")
        rows.extend(bench_size(routes))
    return rows
