import math

import pytest

from llm_jepa.sweep.stats import cell_stats, paired_test


def _result(cell_id, seed, value, baseline=False, cell=None):
    return {"cell_id": cell_id, "seed": seed, "baseline": baseline, "cell": cell or {},
            "summary": {"accuracy": value}}


def test_paired_t_test_by_hand():
    # differences 0.1, 0.05, 0.15: mean 0.1, sd 0.05, t = 0.1 / (0.05 / sqrt 3) = 2 sqrt 3, df 2.
    # Student t with 2 df has CDF 1/2 + t / (2 sqrt(2 + t^2)), so p = 1/2 - t / (2 sqrt(2 + t^2)).
    base = {1: 0.5, 2: 0.6, 3: 0.55}
    cell = {1: 0.6, 2: 0.65, 3: 0.7}
    t = 2 * math.sqrt(3)
    out = paired_test(cell, base)
    assert out["t"] == pytest.approx(t)
    assert out["p_value"] == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)))
    assert out["n_paired"] == 3


def test_only_matching_seeds_are_paired():
    out = paired_test({1: 0.6, 2: 0.65, 3: 0.7, 9: 0.0}, {1: 0.5, 2: 0.6, 3: 0.55, 8: 1.0})
    assert out["n_paired"] == 3 and out["p_value"] < 0.05


def test_one_shared_seed_gives_nan_with_note():
    out = paired_test({1: 0.6, 2: 0.7}, {1: 0.5})
    assert math.isnan(out["p_value"]) and "need 2" in out["note"]


def test_identical_results_give_nan_with_note():
    out = paired_test({1: 0.5, 2: 0.6}, {1: 0.5, 2: 0.6})
    assert math.isnan(out["p_value"]) and "equals the baseline" in out["note"]


def test_cell_stats_mean_std_and_significance():
    results = [_result("baseline", s, v, baseline=True) for s, v in ((1, 0.5), (2, 0.6), (3, 0.55))]
    results += [_result("jepa", s, v, cell={"k": 1}) for s, v in ((1, 0.6), (2, 0.65), (3, 0.7))]
    results += [_result("worse", s, v) for s, v in ((1, 0.4), (2, 0.52), (3, 0.45))]
    rows = {r["cell_id"]: r for r in cell_stats(results)}
    assert rows["jepa"]["mean"] == pytest.approx(0.65)
    assert rows["jepa"]["std"] == pytest.approx(0.05)  # sample std of 0.6, 0.65, 0.7
    assert rows["jepa"]["significant"] and not rows["worse"]["significant"]
    assert rows["worse"]["p_value"] > 0.95
    assert math.isnan(rows["baseline"]["p_value"]) and not rows["baseline"]["significant"]
    assert list(rows)[0] == "baseline"


def test_single_seed_cell_has_nan_std():
    rows = cell_stats([_result("a", 1, 0.5, baseline=True), _result("b", 1, 0.7)])
    assert all(math.isnan(r["std"]) for r in rows)
    assert math.isnan(rows[1]["p_value"]) and rows[1]["note"]


def test_the_same_gain_on_every_seed_is_no_test_and_not_significant():
    """Accuracies move in steps of 1/n: +3/300 on both seeds gave t = inf, p = 0 and a star in seeds.md."""
    results = [_result("baseline", s, v, baseline=True) for s, v in ((1, 0.50), (2, 0.60))]
    results += [_result("jepa", s, v + 0.01) for s, v in ((1, 0.50), (2, 0.60))]
    row = {r["cell_id"]: r for r in cell_stats(results)}["jepa"]
    assert row["p_value"] != row["p_value"] and not row["significant"]
    assert "same on every seed" in row["note"]
