"""Timing: warm up, then alternate endpoint and raw SQL, and summarise."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Case:
    """One question answered twice: through the app (``endpoint``) and by one raw SQL statement
    (``raw``). ``verify(endpoint_result, raw_result)`` returns facts to report (and may raise).

    ``pending``: the endpoint does not exist yet (a message saying what is missing); only the raw
    side is measured, and the run does not fail on it."""

    name: str
    goal: float  # endpoint median / raw median must not exceed this
    endpoint: Callable[[], Any] | None
    raw: Callable[[], Any]
    verify: Callable[[Any, Any], dict] | None = None
    info: dict = field(default_factory=dict)
    # Optional: a breakdown of one endpoint call (SQL vs the rest), filled by the benchmark.
    breakdown: Callable[[], dict] | None = None
    pending: str | None = None


def stats(samples: list[float]) -> dict:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(p95, 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
        "n": len(ms),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure_pending(case: Case, *, reps: int, warmup: int) -> dict:
    """The raw side only, for a benchmark whose endpoint is not there yet."""
    for _ in range(warmup):
        case.raw()
    raw = []
    for _ in range(reps):
        dt, _ = timed(case.raw)
        raw.append(dt)
    return {
        "name": case.name,
        "goal_ratio": case.goal,
        "pending": case.pending,
        "raw": stats(raw),
        "info": case.info,
        "pass": None,
    }


def measure(case: Case, *, reps: int, warmup: int) -> dict:
    if case.pending:
        return measure_pending(case, reps=reps, warmup=warmup)
    for _ in range(warmup):
        case.endpoint()
        case.raw()
    ep, raw = [], []
    for i in range(reps):
        # Alternate which goes first, so neither always gets the warmer cache.
        order = ((ep, case.endpoint), (raw, case.raw)) if i % 2 == 0 else ((raw, case.raw), (ep, case.endpoint))
        for bucket, fn in order:
            dt, _ = timed(fn)
            bucket.append(dt)
    e, r = stats(ep), stats(raw)
    result = {
        "name": case.name,
        "goal_ratio": case.goal,
        "endpoint": e,
        "raw": r,
        "ratio_median": round(e["median_ms"] / r["median_ms"], 3),
        "ratio_p95": round(e["p95_ms"] / r["p95_ms"], 3),
        # Each repetition runs both back to back: the median of their ratios is less sensitive
        # to load from other processes drifting over the run.
        "ratio_paired_median": round(statistics.median(a / b for a, b in zip(ep, raw, strict=True)), 3),
        "info": case.info,
    }
    result["pass"] = result["ratio_median"] <= case.goal
    if case.verify:
        result["verify"] = case.verify(case.endpoint(), case.raw())
    if case.breakdown:
        result["breakdown"] = case.breakdown()
    return result
