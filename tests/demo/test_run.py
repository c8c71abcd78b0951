"""A shortened demo, end to end: data, checkpoint, three arms, evaluation, diagnostics, report."""

import json
from pathlib import Path

import pytest

from llm_jepa.demo.run import DemoConfig, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    cfg = DemoConfig(output=str(out), steps=6, batch_size=8, n_train=120, n_test=8, size="micro", n_analysis=8,
                     max_new_tokens=8)
    return cfg, run_demo(cfg)


def test_demo_writes_report_and_compares_all_arms(demo):
    cfg, results = demo
    out = Path(cfg.output)
    assert set(results["arms"]) == {"baseline", "jepa", "baseline_equal_compute"}
    for name in ("report.md", "losses.png", "results.json", "data/train.jsonl", "base/config.json"):
        assert (out / name).exists(), name
    arms = results["arms"]
    # the equal-compute baseline gets the JEPA arm's FLOPs: more steps than the plain baseline
    assert arms["baseline_equal_compute"]["steps"] > arms["baseline"]["steps"] == 6
    for arm in arms.values():
        s = arm["summary"]
        assert s["n"] == 8 and {"exact", "startswith", "equivalent"} <= set(s["metrics"])
        assert "collapsed" in arm["diagnostics"]["code_collapse"]
    report = (out / "report.md").read_text()
    assert "baseline_equal_compute" in report and "retrieval@1" in report
    (verdict,) = [x for x in report.splitlines() if x.startswith("- JEPA vs baseline exact match")]
    assert "McNemar p" in verdict or "the same verdict on each of the 8 test rows" in verdict


def test_rerun_resumes_without_retraining(demo):
    cfg, _ = demo
    stamp = {p: p.stat().st_mtime_ns for p in Path(cfg.output).glob("runs/*/train_results.json")}
    again = run_demo(cfg)
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    # a reused arm keeps its training time (the report said 'train s 0' and the console '0.00 s/step')
    for name, arm in again["arms"].items():
        assert arm["reused"] and arm["train_seconds"] > 0 and 0 < arm["s_per_step"] < arm["train_seconds"], name
    assert set(again["arms"]) == {"baseline", "jepa", "baseline_equal_compute"}
    assert json.loads((Path(cfg.output) / "results.json").read_text())["arms"].keys() == again["arms"].keys()


def test_other_directory_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        run_demo(DemoConfig(output=str(tmp_path)))
    assert (tmp_path / "precious.txt").read_text() == "mine"


def test_several_seeds_are_summarised_and_tested_against_the_baseline(tmp_path):
    from llm_jepa.demo.run import run_demo_seeds

    cfg = DemoConfig(output=str(tmp_path / "seeds"), steps=3, batch_size=4, n_train=40, n_test=4, size="micro",
                     n_analysis=4, max_new_tokens=4, arms=["baseline", "jepa"])
    summary = run_demo_seeds(cfg, [1, 2])
    for seed in (1, 2):
        assert (tmp_path / "seeds" / f"seed-{seed}" / "report.md").exists()
    rows = {r["cell_id"]: r for r in summary["stats"]}
    assert set(rows) == {"baseline", "jepa"} and rows["jepa"]["n"] == rows["jepa"]["n_paired"] == 2
    per_seed = [r["summary"]["exact"] for r in summary["runs"] if r["cell_id"] == "jepa"]
    assert rows["jepa"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert "| jepa | 2 |" in (tmp_path / "seeds" / "seeds.md").read_text()
    assert "Learning rate per seed: 1: 0.001, 2: 0.001" in (tmp_path / "seeds" / "seeds.md").read_text()
    # a generated-data demo from scratch: the seed changes the data and the initial weights (with
    # --model and --data it changes neither: test_pretrained checks that wording)
    assert "Each seed changes the generated data, the model's initial weights and the data order" in \
        (tmp_path / "seeds" / "seeds.md").read_text()
    with pytest.raises(ValueError, match="distinct"):
        run_demo_seeds(cfg, [1, 1])

    # scripts/demo_table.py (the tables of docs/results.md) reads the same folders
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_table", Path(__file__).parents[2] / "scripts" / "demo_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    text = table.tables(tmp_path / "seeds")
    for seed in (1, 2):
        assert f"| {seed} | baseline |" in text and f"| {seed} | jepa |" in text
    assert "Learning rate: seed 1 0.001; seed 2 0.001" in text
    import numpy as np  # two seeds with the same difference: scipy's t is infinite, the table says why

    assert table.paired_t(np.array([0.58, 0.55]), np.array([0.60, 0.57])) == "same difference on every seed (-0.020): no t"
    assert table.paired_t(np.array([0.58, 0.56]), np.array([0.60, 0.57])).startswith("t = -3.00, p = 0.898")
    (jepa_exact,) = [line for line in text.splitlines() if line.startswith("| jepa | exact |")]
    assert f"{rows['jepa']['mean']:.3f} ±" in jepa_exact and "| 1, 2 |" in jepa_exact
    # two demos into one folder may finish in either order and write the arms in theirs: the table
    # keeps the demo's order (baseline first), as docs/results.md does
    res = tmp_path / "seeds" / "seed-1" / "results.json"
    r = json.loads(res.read_text())
    r["arms"] = dict(reversed(list(r["arms"].items())))
    res.write_text(json.dumps(r))
    again = table.tables(tmp_path / "seeds")
    assert again.index("| 1 | baseline |") < again.index("| 1 | jepa |")
    assert again.index("| baseline | exact |") < again.index("| jepa | exact |")
    assert again == text


def test_default_output_folders_are_ignored_by_git():
    """A newcomer's `llm-jepa demo` / `bench` from the repository root must not fill `git status`."""
    import inspect
    import shutil
    import subprocess

    from llm_jepa.bench.run import run_bench

    root = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    defaults = [DemoConfig().output, inspect.signature(run_bench).parameters["workdir"].default]
    for folder in defaults:
        probe = f"{folder}/report.md"  # a file at the top of the folder (runs/ is ignored anyway)
        assert subprocess.run(["git", "check-ignore", "-q", probe], cwd=root).returncode == 0, folder


def test_overwrite_with_more_steps_retrains_and_keeps_the_old_demo(tmp_path):
    small = dict(batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4,
                 arms=["baseline"])
    out = tmp_path / "out"
    run_demo(DemoConfig(output=str(out), steps=2, **small))
    again = run_demo(DemoConfig(output=str(out), steps=3, overwrite=True, **small))
    # today's main reused the 2-step arm and reported it as 3 steps
    from llm_jepa.rundir import read_metrics

    assert again["arms"]["baseline"]["steps"] == 3
    assert [r["step"] for r in read_metrics(out / "runs" / "baseline" / "metrics.jsonl")] == [1, 2, 3]
    old = tmp_path / "out.previous-1"
    assert [r["step"] for r in read_metrics(old / "runs" / "baseline" / "metrics.jsonl")] == [1, 2]


def test_a_rerun_may_add_an_arm_and_change_threads_without_retraining_the_others(tmp_path):
    """Once any change of the arm list or of --threads was 'other settings': the demo refused the
    folder, and with --overwrite retrained every arm."""
    small = dict(steps=2, batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4)
    out = tmp_path / "out"
    run_demo(DemoConfig(output=str(out), arms=["baseline"], **small))
    stamp = (out / "runs" / "baseline" / "train_results.json").stat().st_mtime_ns
    again = run_demo(DemoConfig(output=str(out), arms=["baseline", "stp"], threads=1, **small))
    assert set(again["arms"]) == {"baseline", "stp"}
    assert (out / "runs" / "baseline" / "train_results.json").stat().st_mtime_ns == stamp
    assert not (tmp_path / "out.previous-1").exists()
    with pytest.raises(FileExistsError):  # a setting that changes results still does
        run_demo(DemoConfig(output=str(out), arms=["baseline"], **(small | {"steps": 3})))


def test_a_stopped_demo_keeps_the_numbers_of_the_arms_it_finished(tmp_path, monkeypatch):
    """results.json was written only at the end: a demo stopped in its third arm (hours in, with a
    real model) kept its trained arms but none of their numbers."""
    import llm_jepa.demo.run as demo_run

    small = dict(steps=2, batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4)
    out = tmp_path / "seed-82"
    real, calls = demo_run._evaluate_arm, []

    def stopped_in_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(demo_run, "_evaluate_arm", stopped_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_demo(DemoConfig(output=str(out), arms=["baseline", "stp"], **small))
    kept = json.loads((out / "results.partial.json").read_text())
    assert list(kept["arms"]) == ["baseline"] and kept["finished"] is False
    assert kept["arms"]["baseline"]["summary"]["n"] == 4 and "code_collapse" in kept["arms"]["baseline"]["diagnostics"]
    assert not (out / "results.json").exists() and not (out / "results.partial.json.tmp").exists()
    import importlib.util  # scripts/demo_table.py shows the finished arms of a stopped seed

    spec = importlib.util.spec_from_file_location("demo_table", Path(__file__).parents[2] / "scripts" / "demo_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    assert "| 82 | baseline |" in table.tables(tmp_path)
    monkeypatch.setattr(demo_run, "_evaluate_arm", real)
    done = run_demo(DemoConfig(output=str(out), arms=["baseline", "stp"], **small))
    whole = (out / "results.json").read_text()
    assert json.loads(whole)["finished"] is True and set(done["arms"]) == {"baseline", "stp"}
    assert not (out / "results.partial.json").exists()
    # a rerun stopped half-way leaves the whole demo's results.json as it was (red team)
    calls.clear()
    monkeypatch.setattr(demo_run, "_evaluate_arm", stopped_in_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_demo(DemoConfig(output=str(out), arms=["baseline", "stp"], **small))
    assert (out / "results.json").read_text() == whole


def test_a_rerun_may_name_the_same_folder_by_another_path(tmp_path, monkeypatch):
    """A demo started with a relative --output, rerun from another directory with the absolute path,
    was 'a demo run with other settings' (and with --overwrite retrained every arm)."""
    small = dict(steps=2, batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4,
                 arms=["baseline"])
    monkeypatch.chdir(tmp_path)
    run_demo(DemoConfig(output="out", **small))
    stamp = (tmp_path / "out" / "runs" / "baseline" / "train_results.json").stat().st_mtime_ns
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = run_demo(DemoConfig(output=str(tmp_path / "out"), **small))
    assert again["arms"]["baseline"]["summary"]["n"] == 4
    assert (tmp_path / "out" / "runs" / "baseline" / "train_results.json").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "out" / "demo_config.json").read_text())["output"] == str(tmp_path / "out")
    run_demo(DemoConfig(output="../out", **small))  # and by a relative path from there
    assert (tmp_path / "out" / "runs" / "baseline" / "train_results.json").stat().st_mtime_ns == stamp
    from llm_jepa.demo.run import _absolute

    assert _absolute({"model": "../out/base"})["model"] == str(tmp_path / "out" / "base")  # a local model
    assert _absolute({"model": "smollm2-135m-instruct"})["model"] == "smollm2-135m-instruct"  # a name


def test_a_demo_made_with_relative_paths_is_still_reused(tmp_path, monkeypatch):
    """Demos made before paths were kept absolute saved them as typed (relative to where they ran):
    the same command from the same directory must reuse their arms, not retrain them (red team)."""
    import yaml

    small = dict(steps=2, batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4,
                 arms=["baseline"])
    monkeypatch.chdir(tmp_path)
    run_demo(DemoConfig(output="out", **small))
    arm = tmp_path / "out" / "runs" / "baseline"
    saved = yaml.safe_load((arm / "llm_jepa_config.yaml").read_text())
    for k in ("model_name_or_path", "train_file", "output_dir"):  # as an older demo wrote them
        saved[k] = str(Path(saved[k]).relative_to(tmp_path))
    (arm / "llm_jepa_config.yaml").write_text(yaml.safe_dump(saved))
    marker = json.loads((tmp_path / "out" / "demo_config.json").read_text())
    (tmp_path / "out" / "demo_config.json").write_text(json.dumps({**marker, "output": "out"}))
    stamp = (arm / "train_results.json").stat().st_mtime_ns
    run_demo(DemoConfig(output="out", **small))
    assert (arm / "train_results.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["baseline"]


def test_an_arm_trained_with_other_steps_is_not_reused(tmp_path):
    from llm_jepa.demo.run import _trained_with

    run = tmp_path / "arm"
    run.mkdir()
    (run / "llm_jepa_config.yaml").write_text("max_steps: 4\nlearning_rate: 0.001\n")
    assert _trained_with(run, {"max_steps": 4, "learning_rate": 1e-3, "overwrite": True})
    assert not _trained_with(run, {"max_steps": 6, "learning_rate": 1e-3})
    assert not _trained_with(tmp_path / "missing", {"max_steps": 4})
    assert _trained_with(run, {"max_steps": 4, "threads": 2})  # threads change no result


def test_training_flops_count_step_records_once(tmp_path):
    from llm_jepa.demo.run import _training_flops

    records = [{"step": 1, "kind": "train", "flops": 10.0}, {"step": 2, "kind": "train", "flops": 10.0,
                                                            "monitor_flops": 4.0},
               {"step": 2, "kind": "eval", "eval_loss": 1.0, "flops": 99.0},
               {"step": 2, "kind": "summary", "train_runtime": 1.0, "flops": 99.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert _training_flops(tmp_path) == 16.0


@pytest.mark.parametrize("flag,value", [("--steps", "0"), ("--batch-size", "0"), ("--learning-rate", "-1"),
                                        ("--n-train", "0"), ("--n-test", "0")])
def test_bad_numbers_fail_before_anything_is_written(tmp_path, capsys, flag, value):
    # red team: each was found only after demo_config.json, the data and the base model were
    # written (--n-test 0 after a whole arm had trained); --steps 0 trained for the Trainer's epochs
    from llm_jepa.cli import main

    out = tmp_path / "out"
    assert main(["demo", "--output", str(out), "--size", "micro", flag, value]) == 2
    assert flag.lstrip("-").replace("-", "_") in capsys.readouterr().err
    assert not out.exists()


def test_a_rerun_without_arms_keeps_the_arms_the_folder_was_made_with(tmp_path):
    """The default arms changed (with --model: plain, JEPA and now STP). A rerun of an existing
    folder without --arms trained the new default arm (hours with a real model) and rewrote the
    folder's arm list; it now keeps the folder's arms. An explicit --arms still adds one."""
    from llm_jepa.cli import main

    out = tmp_path / "out"
    small = ["--output", str(out), "--size", "micro", "--steps", "2", "--batch-size", "4", "--n-train", "40",
             "--n-test", "4"]
    assert main(["demo", *small, "--arms", "baseline"]) == 0
    assert main(["demo", *small]) == 0  # the defaults are baseline, jepa, baseline_equal_compute
    assert json.loads((out / "demo_config.json").read_text())["arms"] == ["baseline"]
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["baseline"]
    assert list(json.loads((out / "results.json").read_text())["arms"]) == ["baseline"]


def test_seeds_added_without_arms_train_the_arms_the_other_seeds_have(tmp_path, capsys):
    """--seeds: each new seed got the (changed) default arms while existing seeds kept theirs, so an
    arm ran on some seeds only and seeds.md could not test it."""
    from llm_jepa.cli import main

    out = tmp_path / "seeds"
    small = ["--output", str(out), "--size", "micro", "--steps", "2", "--batch-size", "4", "--n-train", "40",
             "--n-test", "4"]
    assert main(["demo", *small, "--seeds", "1", "--arms", "baseline"]) == 0
    assert main(["demo", *small, "--seeds", "1", "2"]) == 0
    for seed in (1, 2):
        assert json.loads((out / f"seed-{seed}" / "demo_config.json").read_text())["arms"] == ["baseline"]
    assert main(["demo", *small, "--seeds", "3", "--arms", "baseline", "stp"]) == 0
    capsys.readouterr()
    assert main(["demo", *small, "--seeds", "1", "2", "3"]) == 2
    assert "different arms" in capsys.readouterr().err
