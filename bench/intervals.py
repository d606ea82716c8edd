"""95% confidence intervals for the benchmarks: Student's t over seeds, and a percentile bootstrap.

Every comparison a benchmark reports is `mean ± half-width`; with a handful of seeds the t quantile (4.30 for
3 seeds) is what keeps such an interval honest, where 1.96 would understate it by half.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

# two-sided 95% Student t quantiles t_{0.975, df}, df = 1..30; beyond that the normal 1.96 is within 4%
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069,
         2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df={df}")
    return T_975[df - 1] if df <= len(T_975) else 1.96


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t interval) of `values`; the half-width is NaN for a single value."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_ci of no values")
    mean = sum(values) / n
    if n == 1:
        return mean, float("nan")
    # s^2 = sum (x - mean)^2 / (n - 1); half-width = t_{0.975, n-1} * s / sqrt(n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n)


def paired_difference_ci(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% half-width of a_s - b_s over paired seeds s (same start, same eval prompts)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need the same length, got {len(a)} and {len(b)}")
    return mean_ci([x - y for x, y in zip(a, b)])


def proportion_ci(successes: int, n: int) -> tuple[float, float]:
    """Accuracy on n prompts and its 95% normal half-width 1.96 * sqrt(p (1 - p) / n)."""
    p = successes / n
    return p, 1.96 * math.sqrt(p * (1 - p) / n)


def bootstrap_ci(
    units: Sequence, statistic: Callable[[list], float | None], num_resamples: int = 2000, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile 95% interval of `statistic` over resamples (with replacement) of `units`.

    Resamples whose statistic is None (e.g. a target never reached) count as +inf, so an interval whose
    upper end is None says the statistic is undefined in more than 2.5% of resamples.
    """
    rng = random.Random(seed)
    values = []
    for _ in range(num_resamples):
        value = statistic([units[rng.randrange(len(units))] for _ in units])
        values.append(math.inf if value is None else value)
    values.sort()
    low, high = values[int(0.025 * num_resamples)], values[min(num_resamples - 1, int(0.975 * num_resamples))]
    return (None if math.isinf(low) else low), (None if math.isinf(high) else high)
