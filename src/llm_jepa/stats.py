"""The statistics of llm-jepa, in one module: confidence intervals for accuracies, the exact McNemar
test of two systems scored on the same examples, its extension to several seeds that keeps the
example as the unit (``paired_rows_test``), and the paired one-tailed t-test over seeds of the
paper's protocol (``paired_test``, used per sweep cell by :mod:`llm_jepa.sweep.stats`)."""

from __future__ import annotations

import math
import warnings
from typing import Any

__all__ = ["mcnemar", "paired_rows_test", "sign_flip_test", "sign_test", "wilson_interval", "paired_test",
           "SIGNIFICANCE"]


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

    if len(first) != len(second):
        raise ValueError(f"mcnemar: {len(first)} and {len(second)} results; it compares the same examples")
    pairs = [(bool(a), bool(b)) for a, b in zip(first, second, strict=True) if a is not None and b is not None]
    return sign_test([int(a) - int(b) for a, b in pairs])


def sign_test(differences: list[float]) -> tuple[int, int, float]:
    """Two-sided exact sign test: (how many differences are positive, how many negative, p of the
    binomial test on those two counts; nan when every difference is zero). Zeros are left out."""
    from scipy.stats import binomtest

    gain = sum(d > 0 for d in differences)
    lose = sum(d < 0 for d in differences)
    return gain, lose, (binomtest(gain, gain + lose).pvalue if gain + lose else float("nan"))


def sign_flip_test(differences: list[int]) -> float:
    """Exact two-sided sign-flip (permutation) test of integer paired differences: the probability,
    when each nonzero difference's sign is a fair coin, of a sum at least as far from zero as the
    observed one (nan when every difference is zero). With differences of +-1 only it is the exact
    sign test (McNemar's exact test); larger differences weigh more, so many small gains cannot
    outvote fewer large losses."""
    import numpy as np
    from scipy.stats import binom

    diffs = []
    for d in differences:  # once (a generator), as Python ints (a sum of int8 wraps around)
        if int(d) != d:
            raise ValueError(f"sign_flip_test: differences must be integers, got {d}")
        diffs.append(int(d))
    weights: dict[int, int] = {}
    for d in diffs:
        if d:
            weights[abs(d)] = weights.get(abs(d), 0) + 1
    if not weights:
        return float("nan")
    total = sum(w * c for w, c in weights.items())
    dist = np.ones(1)  # the sum of no rows: 0, surely
    for w, c in sorted(weights.items()):  # each weight's rows: w * (2 Bin(c, 1/2) - c)
        part = np.zeros(2 * w * c + 1)
        part[:: 2 * w] = binom.pmf(np.arange(c + 1), c, 0.5)
        dist = np.convolve(dist, part)
    values = np.arange(-total, total + 1)
    observed = abs(sum(diffs))
    return float(min(1.0, dist[np.abs(values) >= observed].sum()))


def paired_rows_test(first: list[dict], second: list[dict]) -> tuple[int, int, float]:
    """Two systems over several seeds, evaluated on the same test rows: ``first[s][row]`` and
    ``second[s][row]`` are seed ``s``'s verdicts, keyed by row (``None``: undecided, that seed's pair
    left out). Per row, the differences (1 right, 0 wrong) are summed over the seeds, and
    :func:`sign_flip_test` tests the sum over rows: the row is the unit. Pooling the (seed, row) pairs
    in McNemar's test would treat one row's seeds as independent examples, and they are not (an easy
    row is right with every seed). With one seed this is McNemar's exact test. Returns (rows ahead
    with the first, rows ahead with the second, p)."""
    if len(first) != len(second):
        raise ValueError(f"paired_rows_test: {len(first)} and {len(second)} seeds")
    total: dict = {}
    for a, b in zip(first, second, strict=True):
        for row in a.keys() & b.keys():
            if a[row] is not None and b[row] is not None:
                total[row] = total.get(row, 0) + int(bool(a[row])) - int(bool(b[row]))
    diffs = list(total.values())
    return sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), sign_flip_test(diffs)


SIGNIFICANCE = 0.05


def paired_test(cell: dict[int, float], baseline: dict[int, float]) -> dict[str, Any]:
    """One-tailed paired t-test (cell > baseline) on matching seeds -> {t, p_value, n_paired, note}."""
    seeds = sorted(set(cell) & set(baseline))
    if len(seeds) < 2:
        return {"t": math.nan, "p_value": math.nan, "n_paired": len(seeds),
                "note": f"no test: {len(seeds)} seed(s) shared with the baseline, need 2"}
    from scipy.stats import ttest_rel

    a, b = [cell[s] for s in seeds], [baseline[s] for s in seeds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # zero-variance differences: handled below
        res = ttest_rel(a, b, alternative="greater")
    t, p = float(res.statistic), float(res.pvalue)
    note = ""
    if math.isnan(p):
        note = "no test: the cell equals the baseline on every seed"
    elif all(math.isclose(x - y, a[0] - b[0], rel_tol=0, abs_tol=1e-12) for x, y in zip(a, b, strict=True)):
        # equal up to rounding (0.58 - 0.60 and 0.55 - 0.57 differ in the last bit): t is then huge, not infinite.
        # Accuracies move in steps of 1/n, so two seeds share a difference often; a zero-variance t says
        # nothing, and its p of 0 must not read as significant
        note = "the difference is the same on every seed, so the t statistic is infinite: no test"
        p = math.nan
    return {"t": t, "p_value": p, "n_paired": len(seeds), "note": note}
