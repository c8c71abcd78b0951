"""scripts/demo_table.py (the tables of docs/results.md) on hand-made demo folders: what it pairs,
what it leaves out, and which folders it reads."""

import importlib.util
import json
from pathlib import Path

import pytest

DIAG = {"pred_code_cosine": 0.5, "code_collapse": {"mean_cosine": 0.9, "std_ratio": 0.2, "effective_rank": 40.0},
        "retrieval": {"top1": 0.01}, "straightness": {"rest_patch_cosine": -0.3}}


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("demo_table", Path(__file__).parents[2] / "scripts" / "demo_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _seed(root: Path, seed: int, arms: dict[str, list], name: str | None = None, summary: dict | None = None,
          prompts: list[str] | None = None) -> None:
    """A demo folder: each arm's verdicts per test row, as (exact, equivalent)."""
    folder = root / (name or f"seed-{seed}")
    results = {"config": {"learning_rate": 2e-4}, "arms": {}}
    for arm, verdicts in arms.items():
        run = folder / "runs" / arm
        (run / "eval").mkdir(parents=True)
        (run / "eval" / "predictions.jsonl").write_text("".join(
            json.dumps({"index": i, "metrics": {"exact": x, "startswith": x, "equivalent": e},
                        **({"prompt": prompts[i], "reference": "r"} if prompts else {})}) + "\n"
            for i, (x, e) in enumerate(verdicts)))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 4, "kind": "summary", **(summary or {"train_runtime": 8.0})}) + "\n")
        results["arms"][arm] = {"run_dir": f"runs/{arm}", "steps": 4, "diagnostics": DIAG}
    (folder / "results.json").write_text(json.dumps(results))


def _row(text: str, start: str) -> list[str]:
    (line,) = [x for x in text.splitlines() if x.startswith(start)]
    return [c.strip() for c in line.strip("|").split("|")]


def test_arms_are_compared_on_the_seeds_and_examples_the_baseline_has(table, tmp_path):
    T, F = True, False
    _seed(tmp_path, 82, {"baseline": [(T, T), (F, T), (F, F), (T, T)],
                         "jepa": [(T, None), (T, T), (F, F), (F, F)]})  # row 0: jepa's comparison undecided
    _seed(tmp_path, 23, {"baseline": [(T, T), (T, T), (F, F), (F, F)],
                         "jepa": [(T, T), (T, T), (T, T), (F, F)]})
    _seed(tmp_path, 37, {"jepa": [(F, F)] * 4})  # no baseline here: not part of the comparison
    _seed(tmp_path, 99, {"baseline": [(F, F)] * 4})  # only a baseline: not part of it either
    _seed(tmp_path, 23, {"baseline": [(F, F)] * 4}, name="seed-23.previous-1")  # set aside by --overwrite
    text = table.tables(tmp_path)
    assert "| 23 | baseline |" in text and "previous" not in text
    assert text.index("| 23 | baseline |") < text.index("| 82 | baseline |")  # seeds in numeric order

    eq = _row(text, "| jepa | equivalent |")
    assert eq[2] == "23, 82 (not 37: no baseline)"
    # seed 82 on the 3 rows both decided (row 0 left out of both): jepa 1/3, baseline 2/3
    assert eq[4] == "0.750, 0.333" and eq[5] == "0.583 (0.500, 0.667)"
    assert eq[7] == "1 / 1"  # seed 23 row 2 for jepa, seed 82 row 3 for the baseline
    ex = _row(text, "| jepa | exact |")
    assert ex[4] == "0.750, 0.500" and ex[5] == "0.500 (0.500, 0.500)"
    # the baseline's own row covers every seed it has, with its own decided rows
    base = _row(text, "| baseline | exact |")
    assert base[2] == "23, 82, 99" and base[5] == "-"
    # the per-seed table counts each arm's own decided rows: jepa on seed 82 decided 3 of 4
    assert "| 82 | jepa | 2.00 | 0.500 [" in text and "| 0.333 (3, 1) |" in text


def test_seconds_per_step_of_a_resumed_arm_cover_the_steps_it_timed(table, tmp_path):
    _seed(tmp_path, 5, {"baseline": [(True, True)]}, summary={"train_runtime": 8.0, "resumed_from_step": 2,
                                                            "steps_trained": 2})
    assert "| 5 | baseline | 4.00 |" in table.tables(tmp_path)  # 8 s over 2 steps, not over all 4
    _seed(tmp_path, 6, {"baseline": [(True, True)]}, summary={"train_runtime": 3.0, "resumed_from_step": 4,
                                                            "steps_trained": 0})
    assert "| 6 | baseline | nan |" in table.tables(tmp_path)  # resumed at its last step: nothing was timed


def test_the_demo_report_tests_paired_arms_with_mcnemar_not_overlapping_intervals(tmp_path):
    """0.600 vs 0.660 on the same 300 rows have overlapping 95% intervals, yet 20 rows right only
    with one arm against 2 only with the other is p = 1e-4: the report said 'one seed cannot tell
    them apart'."""
    from llm_jepa.demo.report import _paired_verdict

    base = [True] * 180 + [False] * 120
    arm = list(base)
    for i in range(180, 200):
        arm[i] = True  # 20 rows right only with the arm
    arm[0] = arm[1] = False  # 2 only with the baseline
    for name, verdicts in (("jepa", arm), ("baseline", base)):
        (tmp_path / "runs" / name / "eval").mkdir(parents=True)
        (tmp_path / "runs" / name / "eval" / "predictions.jsonl").write_text("".join(
            json.dumps({"index": i, "metrics": {"exact": v}}) + "\n" for i, v in enumerate(verdicts)))
    said = _paired_verdict(tmp_path, {"run_dir": "runs/jepa"}, {"run_dir": "runs/baseline"}, "JEPA")
    assert "right only with JEPA on 20 test rows, only with the baseline on 2: McNemar p = 0.00012" in said
    assert "cannot tell" not in said
    (tmp_path / "runs" / "jepa" / "eval" / "predictions.jsonl").write_text("".join(
        json.dumps({"index": i, "metrics": {"exact": v}}) + "\n" for i, v in enumerate(base[:-3] + [True] * 3)))
    assert "McNemar p = 0.25; one seed cannot tell them apart" in _paired_verdict(
        tmp_path, {"run_dir": "runs/jepa"}, {"run_dir": "runs/baseline"}, "JEPA")
    assert _paired_verdict(None, {}, {}, "JEPA") == ""  # no predictions to pair: no verdict
    # both arms wrong on every row (a 5-step demo): not 'right on the same rows'
    (tmp_path / "runs" / "jepa" / "eval" / "predictions.jsonl").write_bytes(
        (tmp_path / "runs" / "baseline" / "eval" / "predictions.jsonl").read_bytes())
    assert _paired_verdict(tmp_path, {"run_dir": "runs/jepa"}, {"run_dir": "runs/baseline"}, "JEPA") == \
        " (the same verdict on each of the 300 test rows)"


def test_seeds_report_says_what_a_seed_changes(tmp_path):
    """With --model and --data a seed changes neither the data nor the initial weights, and seeds.md said
    it did."""
    from llm_jepa.demo.report import write_seeds_report
    from llm_jepa.demo.run import DemoConfig, seed_changes

    summary = {"seeds": [1], "stats": [], "runs": [],
               "seed_changes": seed_changes(DemoConfig(model="m", data="d.jsonl"))}
    write_seeds_report(summary, tmp_path)
    said = (tmp_path / "seeds.md").read_text()
    assert "Each seed changes the training subset drawn from the data file and the data order;" in said
    assert "initial weights" not in said and "generated data" not in said


def test_the_arm_against_baseline_test_counts_test_rows_not_seed_row_pairs(table, tmp_path):
    """Row 0 is right only with JEPA on both seeds: one row ahead, not two independent examples
    (the seeds share their test rows; pooling (seed, row) pairs gave an optimistic p)."""
    T, F = True, False
    _seed(tmp_path, 82, {"baseline": [(F, F), (T, T), (F, F)], "jepa": [(T, T), (F, F), (F, F)]})
    _seed(tmp_path, 23, {"baseline": [(F, F), (F, F), (T, T)], "jepa": [(T, T), (F, F), (F, F)]})
    ex = _row(table.tables(tmp_path), "| jepa | exact |")
    assert ex[7] == "1 / 2" and ex[8] == "1.000"


def test_rows_are_matched_across_seeds_by_content_not_index(table, tmp_path):
    """Without --data each seed generates its own test rows: index 0 of two seeds are different
    examples. Here the same two rows come in another order: row 'a' is ahead with JEPA on both seeds
    (one row, +2), row 'b' with the baseline on one (-1)."""
    T, F = True, False
    _seed(tmp_path, 82, {"baseline": [(F, F), (T, T)], "jepa": [(T, T), (F, F)]}, prompts=["a", "b"])
    _seed(tmp_path, 23, {"baseline": [(T, T), (F, F)], "jepa": [(T, T), (T, T)]}, prompts=["b", "a"])
    ex = _row(table.tables(tmp_path), "| jepa | exact |")
    assert ex[7] == "1 / 1"  # by index it would be row 0: +1 +0, row 1: -1 +1 -> "1 / 0"


def test_one_arm_demos_run_side_by_side_join_by_seed(table, tmp_path):
    """``seed-S-ARM`` folders (one ``demo --arms ARM`` each, run in parallel) are one seed's arms: the
    table equals that of one seed-S folder holding them all; an arm in two folders is refused."""
    T, F = True, False
    arms = {"baseline": [(T, T), (F, T), (F, F), (T, T)], "jepa": [(T, T), (T, T), (F, F), (F, F)]}
    _seed(tmp_path / "one", 82, arms)
    for arm, verdicts in arms.items():
        _seed(tmp_path / "split", 82, {arm: verdicts}, name=f"seed-82-{arm}")
    _seed(tmp_path / "split", 82, {"jepa": [(F, F)] * 4}, name="seed-82-jepa.previous-1")  # set aside: not read
    text = table.tables(tmp_path / "split")
    assert "| jepa | exact |" in text and text == table.tables(tmp_path / "one")
    _seed(tmp_path / "split", 82, {"jepa": [(F, F)] * 4}, name="seed-82-jepa_again")
    with pytest.raises(ValueError, match="arm jepa of seed 82 is in another folder too"):
        table.tables(tmp_path / "split")
