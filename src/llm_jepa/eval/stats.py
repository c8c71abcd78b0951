"""Confidence intervals for accuracies, and the exact McNemar test of two systems scored on the same
examples."""

from __future__ import annotations

import math

__all__ = ["mcnemar", "wilson_interval"]


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well behaved at 0%, 100% and small n)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(first: list, second: list) -> tuple[int, int, float]:
    """Exact McNemar test of two systems on the same examples: ``first[i]`` and ``second[i]`` say
    whether each got example ``i`` right (``None`` where it could not be decided; such pairs are
    left out). Returns (right only with the first, right only with the second, two-sided p of the
    binomial test on the discordant pairs); p is nan when no pair is discordant."""
    from scipy.stats import binomtest

    if len(first) != len(second):
        raise ValueError(f"mcnemar: {len(first)} and {len(second)} results; it compares the same examples")
    pairs = [(bool(a), bool(b)) for a, b in zip(first, second, strict=True) if a is not None and b is not None]
    gain = sum(a and not b for a, b in pairs)
    lose = sum(b and not a for a, b in pairs)
    return gain, lose, (binomtest(gain, gain + lose).pvalue if gain + lose else float("nan"))
