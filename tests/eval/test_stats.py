"""The accuracy interval and the McNemar test that the results tables use."""

from math import comb

import pytest

from llm_jepa.eval.stats import mcnemar, paired_rows_test, sign_flip_test, wilson_interval


def _two_sided_binomial(k: int, n: int) -> float:
    """Exact two-sided sign-test p at p=1/2, by hand: twice the smaller tail, at most 1."""
    tail = sum(comb(n, i) for i in range(min(k, n - k) + 1)) / 2**n
    return min(1.0, 2 * tail)


def test_mcnemar_counts_discordant_pairs_and_leaves_out_undecided_ones():
    first = [True] * 23 + [False] * 21 + [True] * 50 + [False] * 6 + [None, True]
    second = [False] * 23 + [True] * 21 + [True] * 50 + [False] * 6 + [True, None]
    gain, lose, p = mcnemar(first, second)
    assert (gain, lose) == (23, 21)
    assert p == pytest.approx(_two_sided_binomial(23, 44))
    assert p == pytest.approx(0.880, abs=5e-4)  # docs/results.md: lr 2e-4 seed 82, JEPA vs plain exact match
    # symmetric: swapping the systems swaps the counts, not the p
    assert mcnemar(second, first) == (21, 23, pytest.approx(p))
    # 0/1 and booleans alike
    assert mcnemar([1, 0, 1], [0, 0, 0])[:2] == (2, 0)


def test_mcnemar_without_discordant_pairs_and_with_unpaired_lists():
    gain, lose, p = mcnemar([True, False, None], [True, False, False])
    assert (gain, lose) == (0, 0) and p != p  # nan: nothing to test
    with pytest.raises(ValueError, match="same examples"):
        mcnemar([True, False], [True])


def test_wilson_interval_holds_the_proportion_and_stays_in_range():
    lo, hi = wilson_interval(188, 300)
    assert lo < 188 / 300 < hi and (round(lo, 3), round(hi, 3)) == (0.571, 0.679)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 10)[1] == pytest.approx(wilson_interval(10, 10)[1] - wilson_interval(10, 10)[0])
    assert all(x != x for x in wilson_interval(0, 0))


def test_paired_rows_test_counts_rows_not_seed_example_pairs():
    """Three seeds on the same 4 rows. Row 0 is right with the arm on every seed: pooled McNemar
    counts it three times (as if 3 independent examples), the row test once."""
    arm = [{0: True, 1: True, 2: False, 3: None}, {0: True, 1: False, 2: False, 3: True},
           {0: True, 1: True, 2: True, 3: False}]
    base = [{0: False, 1: False, 2: True, 3: True}, {0: False, 1: True, 2: False, 3: True},
            {0: False, 1: True, 2: False, 3: True}]
    pooled = mcnemar([s[r] for s in arm for r in range(4)], [s[r] for s in base for r in range(4)])
    assert pooled[:2] == (5, 3)
    # per row, seeds summed: row 0 +3, row 1 (+1 -1 0) = 0, row 2 (-1 0 +1) = 0, row 3 (left out, 0, -1) = -1
    gain, lose, p = paired_rows_test(arm, base)
    assert (gain, lose) == (1, 1) and p == pytest.approx(1.0)
    # one seed: the same as McNemar's test
    one = paired_rows_test(arm[:1], base[:1])
    assert one == mcnemar([arm[0][r] for r in range(4)], [base[0][r] for r in range(4)])
    with pytest.raises(ValueError, match="seeds"):
        paired_rows_test(arm, base[:2])


def test_sign_flip_test_is_the_exact_permutation_test():
    """Every sign pattern enumerated by hand; with differences of +-1 it is the sign test."""
    import itertools

    for diffs in ([3, -1, 2, 0, -2, 1], [1, 1, 1, -1, 0], [2, 2, 2], [-1, 3]):
        nonzero, observed = [d for d in diffs if d], abs(sum(diffs))
        hits = sum(abs(sum(s * abs(d) for s, d in zip(signs, nonzero, strict=True))) >= observed
                   for signs in itertools.product((1, -1), repeat=len(nonzero)))
        assert sign_flip_test(diffs) == pytest.approx(hits / 2 ** len(nonzero))
    assert sign_flip_test([1] * 23 + [-1] * 21 + [0] * 5) == pytest.approx(_two_sided_binomial(23, 44))
    assert sign_flip_test([0, 0]) != sign_flip_test([0, 0])  # nan


def test_many_small_gains_do_not_outvote_fewer_large_losses():
    """Red team: 60 rows one seed ahead with the arm, 25 rows three seeds ahead with the baseline.
    The arm is less accurate (60 - 75 = -15 right answers), yet a sign test over rows called it
    better at p = 2e-4; the sum's own test does not."""
    arm = [{r: (r < 60 and s == 0) for r in range(85)} for s in range(3)]
    base = [{r: r >= 60 for r in range(85)} for s in range(3)]
    gain, lose, p = paired_rows_test(arm, base)
    assert (gain, lose) == (60, 25) and p > 0.3


def test_sign_flip_test_takes_any_integers_once():
    import numpy as np

    exact = sign_flip_test([1] * 130)
    assert sign_flip_test(np.ones(130, dtype=np.int8)) == pytest.approx(exact)  # int8 sums wrapped to -126
    assert sign_flip_test(x for x in [1] * 12) == pytest.approx(sign_flip_test([1] * 12))  # read twice: p = 1
    with pytest.raises(ValueError, match="integers"):
        sign_flip_test([1, 0.5])
