"""Intervals for figures a decision rests on, and paired comparisons of two models on the same items. Plain
module: stdlib only."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default); (0, 1) when there is nothing to go on."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(first: list[str], second: list[str]) -> float | None:
    """Cohen's kappa of two raters over the same items; None when undefined (no items, or one label only)."""
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    labels = set(first) | set(second)
    expected = sum((first.count(x) / n) * (second.count(x) / n) for x in labels)
    return None if expected >= 1.0 else (observed - expected) / (1 - expected)


RESAMPLES = 2000
SEED = 0  # fixed: the same scores always get the same intervals


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    k = len(ordered) - 1
    return ordered[round(0.025 * k)], ordered[round(0.975 * k)]


def bootstrap_statistic(
    items: Sequence[T], statistic: Callable[[Sequence[T]], float], resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The percentile bootstrap 95% interval of any statistic of the items (resampled with replacement)."""
    n = len(items)
    if n == 0:
        return 0.0, 0.0
    rng = random.Random(seed)
    return _percentiles([statistic([items[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples)])


def bootstrap_interval(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """The percentile bootstrap 95% interval of a mean; (0, 0) for no values."""
    return bootstrap_statistic(values, lambda sample: sum(sample) / len(sample), resamples, seed)


def mcnemar_p(tuned_only: int, base_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant pairs (right only on one side, right only on the other)."""
    n = tuned_only + base_only
    if n == 0:
        return 1.0
    k = min(tuned_only, base_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_comparison(
    base: list[float], tuned: list[float], resamples: int = RESAMPLES, seed: int = SEED
) -> dict[str, float | list[float] | int]:
    """Tuned minus base over the same items: the mean difference, its bootstrap 95% interval and a two-sided
    p-value (exact McNemar when every value is 0 or 1, else a sign-flip randomization test)."""
    if len(base) != len(tuned):
        raise ValueError(f"paired figures need the same items: {len(base)} base vs {len(tuned)} tuned")
    diffs = [t - b for b, t in zip(base, tuned, strict=True)]
    n = len(diffs)
    if n == 0:
        return {"n": 0, "delta": 0.0, "delta_ci95": [0.0, 0.0], "p_value": 1.0}
    delta = sum(diffs) / n
    lo, hi = bootstrap_interval(diffs, resamples, seed)
    if all(v in (0.0, 1.0) for v in (*base, *tuned)):
        p = mcnemar_p(sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
    else:
        rng = random.Random(seed)
        observed = abs(sum(diffs))
        extreme = sum(
            abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed - 1e-12 for _ in range(resamples)
        )
        p = (extreme + 1) / (resamples + 1)
    return {"n": n, "delta": delta, "delta_ci95": [lo, hi], "p_value": p}


def outward(lo: float, hi: float, places: int = 4) -> list[float]:
    """An interval rounded for the record without ever narrowing it: the lower end down, the upper end up (a gate
    at 0.88 must not pass a lower bound of 0.87996)."""
    scale = 10**places
    return [math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale]
