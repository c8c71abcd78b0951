"""Compute known before training: the estimate matches what the trainer then logs, and equal-compute
step counts spend no more than the baseline."""

import json

import pytest

from llm_jepa.compute import equal_compute_steps, estimate_compute
from llm_jepa.config import load_config
from llm_jepa.train import train
from tests._factory import conv, write_run_inputs

ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "ring", "lake") for n in (1, 2)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("compute")
    write_run_inputs(d, ROWS)
    return d


def _cfg(d, out, **kw):
    # one micro-batch holds the whole data set, so shuffling cannot change what a step processes
    base = {"model_name_or_path": str(d / "ckpt"), "train_file": str(d / "train.jsonl"), "output_dir": str(d / out),
            "per_device_train_batch_size": len(ROWS), "logging_steps": 1, "save_strategy": "no",
            "disable_tqdm": True, "report_to": "none"}
    return load_config(None, overrides={**base, **kw})


def _logged_flops(out_dir):
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return sum(r.get("flops", 0.0) - r.get("monitor_flops", 0.0) for r in records)


@pytest.mark.parametrize("kw", [{"regular": True}, {"k": 2, "lambda": 1.0, "loss_dropout": 0.5}],
                         ids=["baseline", "jepa_dropout"])
def test_estimate_equals_the_flops_training_logs(setup, kw):
    cfg = _cfg(setup, "run_" + "_".join(kw), max_steps=6, **kw)
    estimate = estimate_compute(cfg)
    train(cfg)
    assert estimate.steps == 6
    assert estimate.flops() == pytest.approx(_logged_flops(setup / cfg.output_dir), rel=1e-9)


def test_loss_dropout_decisions_are_counted_not_averaged(setup):
    always = estimate_compute(_cfg(setup, "a", max_steps=8, k=1))
    dropped = estimate_compute(_cfg(setup, "b", max_steps=8, k=1, loss_dropout=0.5))
    assert always.view_flops == pytest.approx(dropped.view_flops) and always.view_flops > 0
    n_views = round((dropped.flops() - 8 * dropped.lm_flops) / dropped.view_flops)
    assert 0 <= n_views <= 8 and dropped.flops() == pytest.approx(8 * dropped.lm_flops + n_views * dropped.view_flops)


def test_equal_compute_steps_spend_at_most_the_baseline(setup):
    base = estimate_compute(_cfg(setup, "c", max_steps=10, regular=True))
    jepa = estimate_compute(_cfg(setup, "d", max_steps=10, k=1))
    steps = equal_compute_steps(jepa, base.flops())
    assert 1 <= steps < 10  # views cost extra, so the JEPA arm takes fewer steps
    assert jepa.flops(steps) <= base.flops() < jepa.flops(steps + 1)
    assert equal_compute_steps(base, base.flops()) == 10


def test_equal_compute_in_the_other_direction_gives_the_cheaper_arm_more_steps():
    """The demo's direction: a baseline costing a third of JEPA per step gets three times the steps."""
    assert equal_compute_steps(1.0, budget=3.0 * 100) == 300
    assert equal_compute_steps(3.0, budget=1.0 * 301) == 100  # never more than the budget
    assert equal_compute_steps(2.0, budget=2.0 * 7) == 7
    with pytest.raises(ValueError):
        equal_compute_steps(0.0, budget=10.0)


def test_epochs_give_steps_from_the_data(setup):
    cfg = _cfg(setup, "e", num_train_epochs=3, per_device_train_batch_size=2, gradient_accumulation_steps=2)
    assert estimate_compute(cfg).steps == 3 * 2  # 6 rows -> 3 micro-batches -> 2 updates per epoch


def test_sweep_run_trains_for_the_matched_steps(setup):
    from llm_jepa.sweep.grid import expand, sweep_from_dict
    from llm_jepa.sweep.runner import _match_compute

    (setup / "base.yaml").write_text(f"model_name_or_path: {setup / 'ckpt'}\ntrain_file: {setup / 'train.jsonl'}\n"
                                     f"per_device_train_batch_size: {len(ROWS)}\nmax_steps: 10\n")
    sweep = sweep_from_dict({"base": "base.yaml", "grid": {"k": [1]}, "baseline": {"regular": True}, "seeds": [3],
                             "equal_compute": True}, folder=setup)
    _, jepa = expand(sweep)
    matched = _match_compute(jepa, {**jepa.overrides, "output_dir": str(setup / "f")})
    assert matched["steps_unmatched"] == 10 and 1 <= matched["max_steps"] < 10
    assert matched["flops"] <= matched["baseline_flops"]
