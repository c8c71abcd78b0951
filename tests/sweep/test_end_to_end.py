"""A two-seed, two-cell sweep (plus baseline) on a tiny model: train, evaluate, report, resume."""


import pytest

from llm_jepa.sweep.cli import sweep
from tests._factory import conv, write_run_inputs

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring", "lake") for n in range(1, 5)]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    write_run_inputs(d, ROWS)
    (d / "base.yaml").write_text(
        f"model_name_or_path: {d / 'ckpt'}\ntrain_file: {d / 'train.jsonl'}\nmax_steps: 3\n"
        "per_device_train_batch_size: 4\nlogging_steps: 1\nsave_steps: 100\ndisable_tqdm: true\n"
        "learning_rate: 0.001\n")
    (d / "sweep.yaml").write_text(
        f"base: base.yaml\neval_data: {d / 'train.jsonl'}\neval: {{limit: 4, max_new_tokens: 4, similarity: true, predictors: 1}}\n"
        # a continuous metric, so that the paired t-test has something to test on 2 seeds
        "metric: similarity_incorrect\n"
        "grid:\n  k: [1]\n  lambda: [0.5, 1.0]\nbaseline: {regular: true}\nseeds: [1, 2]\n")
    out = d / "out"
    first = sweep(d / "sweep.yaml", out)
    return d, out, first


def test_sweep_trains_evaluates_and_reports(swept):
    d, out, first = swept
    assert len(first["ran"]) == 6 and not first["failed"]  # (2 cells + baseline) x 2 seeds
    for name in ("results.csv", "results.json", "results.md", "heatmap.png", "compute.png", "losses.png"):
        assert (out / name).exists(), name
    rows = [line for line in (out / "results.md").read_text().splitlines() if line.startswith("| 1 |")]
    assert len(rows) == 2  # the two JEPA cells, each tested against the baseline on the shared seeds
    for row in rows:
        p_value = row.split("|")[6].strip().rstrip("*").strip()
        assert 0.0 <= float(p_value) <= 1.0, row


def test_rerunning_the_sweep_reruns_nothing(swept):
    d, out, _ = swept
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/train/train_results.json")}
    assert len(stamps) == 6
    again = sweep(d / "sweep.yaml", out)
    assert again["ran"] == []
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
