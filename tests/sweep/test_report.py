import json
import math

import pytest

from llm_jepa.sweep.report import markdown_table, read_metrics, run_flops, write_report
from llm_jepa.sweep.stats import cell_stats


def _write(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_read_metrics_keeps_last_record_of_a_repeated_step(tmp_path):
    # a run resumed from the step-10 checkpoint logs step 20 again
    _write(tmp_path / "m.jsonl", [{"step": 10, "lm_loss": 3}, {"step": 20, "lm_loss": 9}, {"step": 20, "lm_loss": 2},
                                  {"train_runtime": 5.0}])
    records = read_metrics(tmp_path / "m.jsonl")
    assert [(r.get("step"), r.get("lm_loss")) for r in records] == [(10, 3), (20, 2), (None, None)]


def test_the_end_of_training_and_eval_records_never_replace_a_step(tmp_path):
    # the Trainer logs its summary (and evaluations) with the last step's number: the loss point of
    # that step and its FLOPs must survive, as old logs without a kind show
    _write(tmp_path / "m.jsonl", [{"step": 1, "lm_loss": 3, "flops": 2.0}, {"step": 2, "lm_loss": 2, "flops": 2.0},
                                  {"step": 2, "eval_loss": 2.5},
                                  {"step": 2, "train_runtime": 5.0, "train_loss": 2.5}])
    records = read_metrics(tmp_path / "m.jsonl")
    assert [(r.get("step"), r.get("lm_loss")) for r in records[:2]] == [(1, 3), (2, 2)]
    (tmp_path / "train").mkdir()
    (tmp_path / "m.jsonl").rename(tmp_path / "train" / "metrics.jsonl")
    assert run_flops(tmp_path, {}) == 4.0


def test_read_metrics_names_the_bad_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"step": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2"):
        read_metrics(tmp_path / "m.jsonl")


def test_run_flops_sums_log_then_falls_back_to_summary(tmp_path):
    _write(tmp_path / "a" / "train" / "metrics.jsonl", [{"step": 1, "flops": 2.0}, {"step": 2, "flops": 3.0}])
    assert run_flops(tmp_path / "a", {"flops": 100.0}) == 5.0
    assert run_flops(tmp_path / "b", {"flops": 100.0}) == 100.0
    assert run_flops(tmp_path / "b", {}) is None


def _results(values, cell, baseline=False, cid=None):
    cid = cid or ("baseline" if baseline else "_".join(f"{k}={v}" for k, v in cell.items()))
    return [{"run_id": f"{cid}__seed{s}", "cell_id": cid, "cell": cell, "seed": s, "baseline": baseline,
             "summary": {"accuracy": v}} for s, v in values.items()]


def test_markdown_table_without_test_shows_na_and_note():
    rows = cell_stats(_results({1: 0.5}, {"regular": True}, True) + _results({1: 0.7}, {"lr": 1e-5}))
    table = markdown_table(rows)
    assert "| 1e-05 |  | 1 | 70.00 ± n/a | n/a |  |" in table
    assert "need 2" in table


def test_report_skips_figures_it_cannot_draw(tmp_path):
    results = _results({1: 0.5, 2: 0.6}, {"lambda": 0}, True) + _results({1: 0.6, 2: 0.8}, {"lr": 1.0})
    written = write_report(tmp_path, results, cell_stats(results))
    assert "heatmap" in written["skipped"] and "compute" in written["skipped"] and "losses" in written["skipped"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["cells"][0]["p_value"] is None  # NaN written as null
    assert math.isclose(saved["cells"][1]["mean"], 0.7)
