"""The demo as a new user watches it (issue 30): a bar per arm and no loading bars, a table that fits
100 columns, a report that explains itself, the paths it wrote at the end, a rerun that keeps the
first run's timings, and an option to keep only the final models."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from llm_jepa.cli import main
from llm_jepa.demo.report import COLUMNS, console_table, report_markdown

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--steps", "4", "--batch-size", "8", "--n-train", "64", "--n-test", "6", "--size", "micro"]


def _demo(out: Path, *extra: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["demo", "--output", str(out), *SMALL, *extra])
    return rc, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("watch") / "demo"
    rc, stdout, stderr = _demo(out, "--arms", "baseline", "jepa")
    assert rc == 0, stderr
    return out, stdout, stderr, json.loads((out / "results.json").read_text())


def test_it_ends_with_where_everything_is(demo):
    out, stdout, _, _ = demo
    last = stdout.strip().splitlines()[-4:]
    assert last[0].endswith(str(out / "report.md")) and last[1].endswith(str(out / "losses.png"))
    assert last[2].endswith(str(out / "results.json"))
    assert re.search(rf"{re.escape(str(out))} holds \d+ MB, \d+ MB of it in 2 checkpoint folder\(s\) "
                     r"\(--final-models-only", last[3]), last[3]


def test_a_bar_per_arm_and_no_loading_bars_or_log_dicts(demo):
    _, stdout, stderr, _ = demo
    text = (stdout + stderr).replace("\r", "\n")
    for arm in ("baseline", "jepa"):
        assert re.search(rf"^{arm}: 4/4 steps \|[# ]+\| +[\d.]+s/step, \S+ left", text, re.M), text[-2000:]
    assert "Writing model shards" not in text and "Loading weights" not in text
    assert "{'loss'" not in text and "'epoch'" not in text


def test_the_baseline_logs_monitor_metrics_and_gets_no_jepa_advice(demo):
    _, stdout, stderr, results = demo
    base = [r for r in results["arms"]["baseline"]["log"] if "lm_loss" in r]
    assert any("monitor_cosine" in r for r in base) and not any("cosine" in r or "jepa_loss" in r for r in base)
    jepa = [r for r in results["arms"]["jepa"]["log"] if "lm_loss" in r]
    assert any("jepa_loss" in r and "cosine" in r for r in jepa)
    before_jepa = (stdout + stderr).split("arm 2/2: jepa")[0]
    assert "--sigreg_weight" not in before_jepa  # the baseline's part of the output


def _with_arms(results: dict, names: list[str]) -> dict:
    one = next(iter(results["arms"].values()))
    return {**results, "arms": {n: one for n in names}}


def test_the_console_table_fits_100_columns_without_cutting_names(demo):
    _, _, _, results = demo
    wide = _with_arms(results, ["baseline", "jepa", "jepa_infonce", "stp", "baseline_equal_compute"])
    text = console_table(wide)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "baseline_equal_compute" in text and "…" not in text
    assert re.search(r"jepa_infonce +\d+ +[\d.]+ +\d\.\d{3} ", text), text


def test_report_explains_every_column_and_arm_and_the_chance_level(demo):
    out, _, _, results = demo
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| arm"))
    for column in [c.strip() for c in header.strip("|").split("|")]:
        assert f"- *{column}*:" in report, column
    for arm in ("baseline", "jepa"):
        assert f"- **{arm}**:" in report.split("## The arms")[1].split("##")[0]
    assert "chance level is 1/n = 1/6" in report
    assert "cos(rest, patch)" not in header  # no STP arm ran
    settings = report.split("## Settings")[1]
    assert "{" not in settings and str(Path.cwd()) not in settings and "- steps: 4" in settings
    with_equal = report_markdown(_with_arms(results, ["baseline", "baseline_equal_compute", "stp"]), out)
    assert "- **baseline_equal_compute**: plain fine-tuning given as many steps as the JEPA arm's" in with_equal
    assert "| cos(rest, patch) |" in with_equal and {c for c, _ in COLUMNS} <= set(re.findall(r"- \*(.+?)\*:",
                                                                                              with_equal))


def test_a_rerun_that_reuses_every_arm_keeps_the_first_runs_timings(demo):
    out, _, _, first = demo
    rc, stdout, stderr = _demo(out, "--arms", "baseline", "jepa")
    assert rc == 0, stderr
    again = json.loads((out / "results.json").read_text())
    assert again["seconds"] == first["seconds"] and again["rerun_seconds"] > 0
    for name, arm in again["arms"].items():
        assert arm["reused"] and arm["train_seconds"] == first["arms"][name]["train_seconds"], name
        assert arm["cpu_seconds"] == first["arms"][name]["cpu_seconds"] > 0, name
    assert "this rerun reused every arm" in stdout
    assert "trained nothing (every arm was reused)" in (out / "report.md").read_text()


def test_final_models_only_deletes_checkpoints_after_each_arm(tmp_path):
    out = tmp_path / "d"
    rc, stdout, stderr = _demo(out, "--arms", "baseline", "--final-models-only")
    assert rc == 0, stderr
    run = out / "runs" / "baseline"
    assert (run / "model.safetensors").is_file() and not list(run.glob("checkpoint-*"))
    assert "--final-models-only: deleted" in stdout and "checkpoint folder" not in stdout.splitlines()[-1]
    readme = (REPO / "README.md").read_text()
    assert "--final-models-only" in readme
