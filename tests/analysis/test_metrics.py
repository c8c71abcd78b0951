import math

import numpy as np
import pytest
import torch

from llm_jepa.analysis.metrics import (
    batch_collapse_stats,
    collapse_diagnostics,
    linear_residual,
    retrieval_accuracy,
    singular_values,
)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_singular_values_match_numpy_and_are_sorted():
    text, code = _randn(40, 8), _randn(40, 8, seed=1)
    got = singular_values(text, code, top=5)
    expected = np.linalg.svd((text - code).numpy().astype(np.float64), compute_uv=False)[:5]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_translation_gives_rank_one_difference():
    text = _randn(50, 8)
    code = text + _randn(1, 8, seed=2)  # every code = text + the same offset
    s = singular_values(text, code)
    assert s[0] > 1.0 and s[1:].abs().max() < 1e-5 * s[0]


def test_identical_views_have_zero_residual():
    text = _randn(50, 8)
    out = linear_residual(text, text.clone())
    assert out["residual"] < 1e-8 and out["relative"] < 1e-8 and out["overdetermined"]


def test_invertible_linear_map_has_near_zero_residual():
    text = _randn(100, 16)
    code = text @ (_randn(16, 16, seed=3) + 4 * torch.eye(16))
    assert linear_residual(text, code)["relative"] < 1e-5


def test_unrelated_views_have_large_residual():
    # N = 200 >> C = 8: independent Gaussians can't be fitted; relative residual ~ sqrt(1 - C/N)
    out = linear_residual(_randn(200, 8), _randn(200, 8, seed=4))
    assert out["relative"] == pytest.approx(math.sqrt(1 - 8 / 200), abs=0.05)


def test_residual_flags_underdetermined_case():
    out = linear_residual(_randn(4, 8), _randn(4, 8, seed=5))
    assert not out["overdetermined"] and out["residual"] < 1e-8  # meaningless, and we say so


def test_collapsed_embeddings_are_flagged():
    emb = _randn(1, 32).repeat(64, 1) + 1e-4 * _randn(64, 32, seed=1)
    d = collapse_diagnostics(emb)
    assert d["collapsed"] and "collapsed onto one direction" in d["message"]
    assert d["mean_cosine"] > 0.999 and d["effective_rank"] < 1.5


def test_isotropic_embeddings_are_not_flagged():
    d = collapse_diagnostics(_randn(512, 32))
    assert not d["collapsed"] and "not collapsed" in d["message"]
    assert abs(d["mean_cosine"]) < 0.05
    assert d["isotropic_std"] == pytest.approx(1 / math.sqrt(32))
    assert d["std_ratio"] == pytest.approx(1.0, abs=0.05)
    assert d["effective_rank"] > 25  # close to 32 for a well-conditioned 512 x 32 Gaussian


def test_effective_rank_by_hand():
    # singular values 3, 1 -> p = (0.75, 0.25); erank = exp(-(0.75 ln 0.75 + 0.25 ln 0.25))
    emb = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert collapse_diagnostics(emb)["effective_rank"] == pytest.approx(expected)


def test_mean_cosine_by_hand():
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # pairs: (1,2) 0, (1,3) 1/sqrt2, (2,3) 1/sqrt2 -> mean sqrt2/3
    assert collapse_diagnostics(emb)["mean_cosine"] == pytest.approx(math.sqrt(2) / 3)


def test_batch_stats_agree_with_full_diagnostics():
    emb = _randn(16, 8)
    cheap, full = batch_collapse_stats(emb), collapse_diagnostics(emb)
    for key in cheap:
        assert cheap[key] == pytest.approx(full[key], rel=1e-5)
    assert batch_collapse_stats(emb[:1].repeat(4, 1))["std_ratio"] < 1e-3


def test_retrieval_identical_sets_is_perfect():
    x = _randn(20, 8)
    assert retrieval_accuracy(x, x) == {"top1": 1.0, "top5": 1.0}


def test_retrieval_against_brute_force():
    pred, target = _randn(30, 4), _randn(30, 4, seed=9)
    sims = torch.nn.functional.normalize(pred, dim=1) @ torch.nn.functional.normalize(target, dim=1).T
    order = sims.argsort(dim=1, descending=True)
    top1 = np.mean([order[i, 0].item() == i for i in range(30)])
    top5 = np.mean([i in order[i, :5].tolist() for i in range(30)])
    assert retrieval_accuracy(pred, target) == pytest.approx({"top1": top1, "top5": top5})


def test_retrieval_of_shuffled_targets_is_low():
    x = _randn(50, 16)
    perm = torch.roll(torch.arange(50), 1)
    assert retrieval_accuracy(x, x[perm])["top1"] == 0.0


def test_retrieval_with_identical_targets_is_chance_not_perfect():
    pred = _randn(10, 4)
    target = torch.ones(10, 4)  # collapsed targets: every target ties; only index 0 wins the tie
    assert retrieval_accuracy(pred, target)["top1"] == pytest.approx(0.1)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        singular_values(torch.zeros(3, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError):
        collapse_diagnostics(torch.zeros(1, 4))
    with pytest.raises(ValueError):
        batch_collapse_stats(torch.zeros(4))
