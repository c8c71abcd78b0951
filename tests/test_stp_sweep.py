"""Data-efficiency sweeps: subsets drawn per seed, every arm at every amount of data, each tested
against the baseline at the same amount; a tiny end-to-end sweep of plain vs plain + STP."""

import json
import math

import pytest

from llm_jepa.config import ConfigError, load_config
from llm_jepa.data import example_from_row, subset_examples
from llm_jepa.sweep.cli import sweep
from llm_jepa.sweep.grid import SweepError, expand, sweep_from_dict
from llm_jepa.sweep.stats import cell_stats
from tests._factory import conv, write_run_inputs

EXAMPLES = [example_from_row({"messages": conv(f"row {i}", f"answer {i}")}, ("d", i)) for i in range(32)]


def test_subsets_are_seeded_nested_and_keep_the_file_order():
    quarter, half = (subset_examples(EXAMPLES, f, seed=3) for f in (0.25, 0.5))
    assert len(quarter) == 8 and len(half) == 16
    assert set(e.source for e in quarter) <= set(e.source for e in half)  # nested
    assert [e.source[1] for e in half] == sorted(e.source[1] for e in half)
    assert subset_examples(EXAMPLES, 0.5, seed=3) == half  # deterministic
    assert subset_examples(EXAMPLES, 0.5, seed=4) != half  # another seed, another subset
    assert len(subset_examples(EXAMPLES, rows=5, seed=3)) == 5 and subset_examples(EXAMPLES, 1.0) == EXAMPLES
    assert len(subset_examples(EXAMPLES[:3], 0.01)) == 1  # never empty


def test_every_cell_and_the_baseline_run_at_every_amount_of_data():
    spec = sweep_from_dict({"base": "b.yaml", "grid": {"stp_lambda": [0.02]}, "baseline": {"regular": True},
                            "data_fractions": [0.25, 1.0], "seeds": [1, 2]})
    runs = expand(spec)
    cells = {(r.cell_id, r.baseline) for r in runs}
    assert cells == {("baseline_train_fraction=0.25", True), ("baseline_train_fraction=1.0", True),
                     ("stp_lambda=0.02_train_fraction=0.25", False), ("stp_lambda=0.02_train_fraction=1.0", False)}
    assert all(r.overrides["train_fraction"] == r.cell["train_fraction"] for r in runs)
    with_rows = sweep_from_dict({"base": "b.yaml", "grid": {"k": [1]}, "data_rows": [10, 20], "seeds": [1]})
    assert sorted(r.overrides["train_rows"] for r in expand(with_rows)) == [10, 20]


@pytest.mark.parametrize("field, value", [("data_fractions", [0, 0.5]), ("data_fractions", [2]),
                                          ("data_fractions", [0.5, 0.5]), ("data_rows", [0.5]),
                                          ("data_rows", [True]), ("data_fractions", [])])
def test_bad_data_amounts_name_the_field(field, value):
    with pytest.raises(SweepError, match=f"field '{field}'"):
        sweep_from_dict({"base": "b.yaml", "grid": {"k": [1]}, field: value}, "s.yaml")
    with pytest.raises(SweepError, match="not both"):
        sweep_from_dict({"base": "b.yaml", "grid": {"k": [1]}, "data_fractions": [1.0], "data_rows": [3]})


def test_each_cell_is_tested_against_the_baseline_with_the_same_data():
    # at 0.5 the arm beats its baseline by 0.10 on both seeds (plus noise); at 1.0 it loses by 0.05.
    # Against a single baseline (the old behaviour) the 1.0 arm would be compared with the 0.5 baseline.
    acc = {(True, 0.5): 0.40, (True, 1.0): 0.60, (False, 0.5): 0.50, (False, 1.0): 0.55}
    results = [{"cell_id": f"{'b' if base else 'c'}{f}", "cell": {"train_fraction": f, **({} if base else {"s": 1})},
                "baseline": base, "seed": seed, "summary": {"accuracy": acc[(base, f)] + 0.01 * seed * (not base)}}
               for base in (True, False) for f in (0.5, 1.0) for seed in (1, 2, 3)]
    rows = {r["cell_id"]: r for r in cell_stats(results)}
    assert rows["c0.5"]["p_value"] < 0.05 and rows["c0.5"]["n_paired"] == 3
    assert rows["c1.0"]["p_value"] > 0.5  # worse than its own baseline
    assert math.isnan(rows["b1.0"]["p_value"])


def test_train_fraction_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="train_fraction"):
        load_config(None, ["--output_dir", str(tmp_path), "--train_fraction", "0"])
    with pytest.raises(ConfigError, match="train_rows"):
        load_config(None, ["--output_dir", str(tmp_path), "--train_rows", "4", "--train_fraction", "0.5"])


REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck") for n in range(1, 5)]


@pytest.mark.slow
def test_tiny_data_efficiency_sweep_trains_and_reports(tmp_path):
    d = tmp_path
    write_run_inputs(d, ROWS)
    (d / "base.yaml").write_text(
        f"model_name_or_path: {d / 'ckpt'}\ntrain_file: {d / 'train.jsonl'}\nnum_train_epochs: 1\n"
        "per_device_train_batch_size: 4\nlogging_steps: 1\nsave_steps: 100\ndisable_tqdm: true\n"
        "learning_rate: 0.001\nregular: true\n")
    (d / "sweep.yaml").write_text(
        f"base: base.yaml\neval_data: {d / 'train.jsonl'}\neval: {{limit: 2, max_new_tokens: 2, similarity: true}}\n"
        "metric: similarity_incorrect\ngrid:\n  stp_lambda: [0.5]\nbaseline: {stp_lambda: 0.0}\n"
        "data_fractions: [0.5, 1.0]\nseeds: [1, 2]\n")
    out = sweep(d / "sweep.yaml", d / "out")
    assert len(out["ran"]) == 8 and not out["failed"]
    assert (d / "out" / "data_efficiency.png").stat().st_size > 0
    for run in (d / "out" / "runs").iterdir():
        spec = json.loads((run / "run.json").read_text())
        steps = [json.loads(line) for line in (run / "train" / "metrics.jsonl").read_text().splitlines()]
        trained = [m for m in steps if "lm_loss" in m]
        assert len(trained) == (1 if spec["cell"]["train_fraction"] == 0.5 else 2)  # 4 or 8 rows, batch 4
        assert all(("stp_loss" in m) == (not spec["baseline"]) for m in trained)
    rows = [line.split("|")[1:-1] for line in (d / "out" / "results.md").read_text().splitlines()
            if line.startswith("| 0.")]  # stp_lambda | train_fraction | n | mean ± std | p | *
    assert sorted((r[0].strip(), r[1].strip(), r[4].strip()) for r in rows)[:2] == [
        ("0.0", "0.5", "baseline"), ("0.0", "1.0", "baseline")]
    for r in rows[2:]:  # the STP arm at each amount of data, tested against that amount's baseline
        assert 0.0 <= float(r[4]) <= 1.0


def test_the_papers_data_efficiency_sweep_file_expands_to_its_arms():
    from pathlib import Path

    from llm_jepa.sweep.grid import load_sweep

    path = Path(__file__).resolve().parents[1] / "configs" / "sweep_stp_data_efficiency.yaml"
    runs = expand(load_sweep(path))
    assert len(runs) == 4 * 5 * 5  # plain, JEPA, STP, JEPA + STP x 5 amounts x 5 seeds
    arms = {tuple(sorted((k, v) for k, v in r.cell.items() if k != "train_fraction")) for r in runs}
    assert (("regular", True), ("stp_lambda", 0.02)) in arms and (("regular", False), ("stp_lambda", 0.0)) in arms
    for r in runs[:: 17]:  # the overrides are valid training options
        cfg = load_config(r.base, overrides={**r.overrides, "output_dir": "x"})
        assert cfg.train_fraction == r.cell["train_fraction"]
