import json

import pytest

from llm_jepa.sweep.cli import sweep
from llm_jepa.sweep.grid import expand, load_sweep
from llm_jepa.sweep.runner import run_sweep

from . import _fake

SWEEP = """\
base: train.yaml
eval_data: test.jsonl
grid:
  k: [1, 2]
  lambda: [1.0]
baseline: {regular: true}
seeds: [82, 23]
"""


@pytest.fixture
def sweep_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    _fake.CALLS.clear()
    return path


def test_two_cells_two_seeds_end_to_end_then_nothing_reruns(tmp_path, sweep_file):
    out = tmp_path / "out"
    first = sweep(sweep_file, out, run_fn=_fake.fake_run)
    assert len(_fake.CALLS) == 6 and not first["failed"]  # (baseline + 2 cells) x 2 seeds
    cells = {row["cell_id"]: row for row in first["cells"]}
    assert cells["k=2_lambda=1.0"]["mean"] == pytest.approx(
        (_fake.accuracy({"k": 2, "lambda": 1.0}, 82) + _fake.accuracy({"k": 2, "lambda": 1.0}, 23)) / 2)
    # gains of 0.10 and 0.11 on the two seeds: t = 21, one-tailed p = 0.015 with one degree of freedom
    assert cells["k=1_lambda=1.0"]["p_value"] == pytest.approx(0.0151, abs=5e-4) and not cells["k=1_lambda=1.0"]["note"]
    for name in ("results.csv", "results.json", "results.md", "heatmap.png", "compute.png", "losses.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "results.md").read_text()
    k1 = [_fake.accuracy({"k": 1, "lambda": 1.0}, seed) for seed in (82, 23)]
    assert "| k | lambda | regular |" in table and f"| {100 * sum(k1) / 2:.2f} ± " in table
    assert table.count("| * |") == 2 and "| baseline |" in table
    saved = json.loads((out / "results.json").read_text())
    assert {r["flops"] for r in saved["runs"]} == {3e9, 9e9}  # summed from the metrics logs

    again = sweep(sweep_file, out, run_fn=_fake.fake_run)
    assert len(_fake.CALLS) == 6 and again["ran"] == []
    assert [r["mean"] for r in again["cells"]] == [r["mean"] for r in first["cells"]]


def test_failed_run_is_reported_and_retried(tmp_path, sweep_file):
    def flaky(run, run_dir, *, resume=False):
        if run.run_id == "k=1_lambda=1.0__seed23" and not any(c[0] == run.run_id for c in _fake.CALLS):
            _fake.CALLS.append((run.run_id, resume))
            raise RuntimeError("out of memory")
        return _fake.fake_run(run, run_dir, resume=resume)

    out = tmp_path / "out"
    first = run_sweep(load_sweep(sweep_file), out, run_fn=flaky)
    assert list(first["failed"]) == ["k=1_lambda=1.0__seed23"] and len(first["results"]) == 5
    assert "out of memory" in (out / "runs" / "k=1_lambda=1.0__seed23" / "error.txt").read_text()
    second = run_sweep(load_sweep(sweep_file), out, run_fn=flaky)
    assert second["ran"] == ["k=1_lambda=1.0__seed23"] and len(second["results"]) == 6
    assert (out / "incomplete" / "k=1_lambda=1.0__seed23-1" / "error.txt").is_file()  # moved, not deleted


def test_partial_run_restarts_or_resumes(tmp_path, sweep_file):
    spec = load_sweep(sweep_file)
    out = tmp_path / "out"
    run_id = expand(spec)[0].run_id
    (out / "runs" / run_id).mkdir(parents=True)
    (out / "runs" / run_id / "checkpoint-5").mkdir()
    run_sweep(spec, out, run_fn=_fake.fake_run, on_partial="resume")
    assert (run_id, True) in _fake.CALLS and sum(r for _, r in _fake.CALLS) == 1
    assert (out / "runs" / run_id / "checkpoint-5").is_dir()  # resumed in place

    other = expand(spec)[1].run_id
    (out / "runs" / other / "result.json").unlink()  # make it half-finished again
    run_sweep(spec, out, run_fn=_fake.fake_run)  # default: restart
    assert (other, False) in _fake.CALLS[6:] and (out / "incomplete" / f"{other}-1" / "run.json").is_file()


def test_changed_settings_are_never_mixed(tmp_path, sweep_file):
    out = tmp_path / "out"
    run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)
    sweep_file.write_text(SWEEP.replace("grid:", "fixed: {learning_rate: 0.1}\ngrid:"))
    with pytest.raises(ValueError, match="different settings"):
        run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)


def test_local_executor_pins_one_gpu_per_process(tmp_path, sweep_file):
    out = tmp_path / "out"
    result = run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run, executor="local", gpus=["0", "1"])
    assert not result["failed"] and len(result["results"]) == 6
    assert {r["summary"]["gpu"] for r in result["results"]} <= {"0", "1"}
    assert all(r["summary"]["gpu"] for r in result["results"])


def test_unknown_executor(tmp_path, sweep_file):
    with pytest.raises(ValueError, match="unknown executor"):
        run_sweep(load_sweep(sweep_file), tmp_path / "o", run_fn=_fake.fake_run, executor="slurm")


def test_submitit_executor_says_how_to_install(tmp_path, sweep_file):
    try:
        import submitit  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="pip install submitit"):
            run_sweep(load_sweep(sweep_file), tmp_path / "o", run_fn=_fake.fake_run, executor="submitit")
    else:
        pytest.skip("submitit is installed; this checks the message shown without it")


def test_executors_do_not_import_the_runner():
    """One direction: the runner calls the executors (it hands them a picklable ``execute``), so
    sweep/dispatch.py imports nothing from sweep/runner.py."""
    import ast

    import llm_jepa.sweep.dispatch as dispatch

    tree = ast.parse(open(dispatch.__file__).read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if m and m.endswith("runner")}


@pytest.mark.parametrize("edit", ["base", "data"])
def test_a_changed_base_config_or_data_file_reruns_the_runs(tmp_path, sweep_file, edit):
    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 4\ntrain_file: train.jsonl\n")
    (tmp_path / "test.jsonl").write_text('{"messages": []}\n')
    out = tmp_path / "out"
    run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)
    assert run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)["ran"] == []
    if edit == "base":  # today's main reran nothing and reported the 4-step results as 8-step ones
        (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 8\ntrain_file: train.jsonl\n")
    else:  # same path, new content
        (tmp_path / "test.jsonl").write_text('{"messages": [1]}\n')
    again = run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)
    assert len(again["ran"]) == 6 and len(again["results"]) == 6
    assert len(list((out / "stale").iterdir())) == 6  # the old results are kept, not deleted
    assert run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)["ran"] == []


def test_a_second_sweep_into_a_held_output_fails_at_once(tmp_path, sweep_file):
    # red team: sweeps took no lock, so a second sweep into the same output moved the first one's
    # half-finished runs to incomplete/ while it was still training into them
    from llm_jepa.rundir import OutputLock, OutputLockedError

    out = tmp_path / "out"
    partial = out / "runs" / "k=1_lambda=1.0__seed82"
    partial.mkdir(parents=True)
    (partial / "marker").write_text("in progress")
    with OutputLock(out, "sweep"), pytest.raises(OutputLockedError, match=r"sweep \(pid \d+"):
        run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)
    assert (partial / "marker").is_file() and not _fake.CALLS
    run_sweep(load_sweep(sweep_file), out, run_fn=_fake.fake_run)  # released: the sweep runs
    assert len(_fake.CALLS) == 6


def test_report_only_refuses_a_folder_another_sweep_holds(tmp_path, sweep_file, capsys):
    """--report-only once wrote results.* into a sweep folder while another sweep there ran (holding
    its lock): it must refuse, in one line naming the holder, and write nothing."""
    from llm_jepa.cli import main
    from llm_jepa.rundir import OutputLock, OutputLockedError

    out = tmp_path / "out"
    sweep(sweep_file, out, run_fn=_fake.fake_run)
    for name in ("results.csv", "results.json", "results.md"):
        (out / name).unlink()
    with OutputLock(out, "sweep"):
        with pytest.raises(OutputLockedError, match=r"in use by another llm-jepa sweep \(pid \d+"):
            sweep(sweep_file, out, report_only=True)
        code = main(["sweep", str(sweep_file), "--output", str(out), "--report-only"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "in use by another llm-jepa sweep (pid" in err[0]
        assert not list(out.glob("results.*"))
    assert len(sweep(sweep_file, out, report_only=True)["cells"]) == 3  # released: the report is written
    assert (out / "results.md").is_file() and not (out / ".llm-jepa.lock").exists()


def _files(tmp_path):
    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 4\ntrain_file: train.jsonl\n")
    (tmp_path / "test.jsonl").write_text('{"messages": []}\n')


def test_the_same_sweep_file_named_by_another_path_reruns_nothing(tmp_path, sweep_file, monkeypatch):
    # a sweep run as `sweep.yaml` and again as /abs/sweep.yaml (or from another directory) was refused:
    # run.json kept base and eval_data as spelled, and the check compared the strings
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    run_sweep(load_sweep("sweep.yaml"), out, run_fn=_fake.fake_run)
    assert len(_fake.CALLS) == 6
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)
    for name in (str(sweep_file), "../sweep.yaml", "./../sweep.yaml"):
        assert run_sweep(load_sweep(name), out, run_fn=_fake.fake_run)["ran"] == []
    # content still decides: new data behind another spelling reruns every run, keeping the old ones
    (tmp_path / "test.jsonl").write_text('{"messages": [1]}\n')
    assert len(run_sweep(load_sweep("../sweep.yaml"), out, run_fn=_fake.fake_run)["ran"]) == 6
    assert len(list((out / "stale").iterdir())) == 6


def test_runs_saved_with_relative_paths_by_an_older_sweep_are_still_done(tmp_path, sweep_file, monkeypatch):
    from dataclasses import replace

    from llm_jepa.sweep.runner import run_key

    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    run_sweep(load_sweep("sweep.yaml"), out, run_fn=_fake.fake_run)
    for run in expand(load_sweep("sweep.yaml")):  # as an older sweep saved them: paths relative, keyed so
        older = replace(run, base="train.yaml", eval_data="test.jsonl")
        for name in ("run.json", "result.json"):
            path = out / "runs" / run.run_id / name
            saved = json.loads(path.read_text())
            path.write_text(json.dumps({**saved, "base": older.base, "eval_data": older.eval_data, **run_key(older)}))
    assert run_sweep(load_sweep("sweep.yaml"), out, run_fn=_fake.fake_run)["ran"] == []
    assert not (out / "stale").exists()


def test_a_sweep_whose_base_config_reads_other_files_from_another_directory_is_refused(tmp_path, monkeypatch):
    # red team: the base config's relative paths resolve against the working directory; the same sweep
    # file run from elsewhere trained on another ./model under the same name, and the report mixed them
    _fake.CALLS.clear()
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "sweep.yaml").write_text(SWEEP)
    (exp / "test.jsonl").write_text('{"messages": []}\n')
    (exp / "train.yaml").write_text("output_dir: x\nmodel_name_or_path: ./model\ntrain_file: train.jsonl\n")
    for folder in (tmp_path, exp):  # two working directories, each with its own ./model, the same data
        (folder / "model").mkdir()
        (folder / "train.jsonl").write_text('{"messages": [1]}\n')
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    run_sweep(load_sweep("exp/sweep.yaml"), out, run_fn=_fake.fake_run)
    assert run_sweep(load_sweep(str(exp / "sweep.yaml")), out, run_fn=_fake.fake_run)["ran"] == []
    saved = json.loads((out / "runs" / "baseline__seed82" / "run.json").read_text())
    assert saved["paths"]["model_name_or_path"] == str(tmp_path / "model")
    monkeypatch.chdir(exp)
    with pytest.raises(ValueError, match=r"read other files \(model_name_or_path: .*/model then, .*/exp/model now; "
                                         r"train_file: "):
        run_sweep(load_sweep("sweep.yaml"), out, run_fn=_fake.fake_run)
    assert len(_fake.CALLS) == 6 and not (out / "stale").exists()


def test_a_non_empty_folder_that_holds_no_sweep_is_refused(tmp_path, sweep_file, capsys):
    # issue 27: the sweep wrote into any folder and replaced a user's own results.md
    from llm_jepa.cli import main

    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.md").write_text("my notes")
    with pytest.raises(FileExistsError, match="is not empty and holds no sweep"):
        sweep(sweep_file, out, run_fn=_fake.fake_run)
    assert main(["sweep", str(sweep_file), "--output", str(out)]) == 2
    assert "holds no sweep" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["results.md"] and (out / "results.md").read_text() == "my notes"
    assert not _fake.CALLS
    sweep(sweep_file, tmp_path / "new", run_fn=_fake.fake_run)  # a new folder, then its rerun, are the sweep's
    assert sweep(sweep_file, tmp_path / "new", run_fn=_fake.fake_run)["ran"] == []


def test_report_only_and_dry_run_leave_out_results_of_other_settings_and_dropped_cells(tmp_path, sweep_file, capsys):
    # issue 27: --report-only and --dry-run globbed runs/*/result.json and checked no key
    import argparse

    from llm_jepa.sweep.cli import _dry_run

    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 4\ntrain_file: train.jsonl\n")
    (tmp_path / "test.jsonl").write_text('{"messages": []}\n')
    out = tmp_path / "out"
    sweep(sweep_file, out, run_fn=_fake.fake_run)
    assert len(sweep(sweep_file, out, report_only=True)["cells"]) == 3
    sweep_file.write_text(SWEEP.replace("k: [1, 2]", "k: [1]"))  # the k=2 cell dropped
    capsys.readouterr()
    cells = sweep(sweep_file, out, report_only=True)["cells"]
    assert sorted(c["cell_id"] for c in cells) == ["baseline", "k=1_lambda=1.0"]
    assert "left out 2 result(s)" in capsys.readouterr().err
    (tmp_path / "train.yaml").write_text("output_dir: x\nmax_steps: 8\ntrain_file: train.jsonl\n")  # other settings
    with pytest.raises(ValueError, match="no finished runs to report"):
        sweep(sweep_file, out, report_only=True)
    _dry_run(argparse.Namespace(sweep_file=str(sweep_file), output=str(out)))
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert listed == ["stale"] * 4


def test_a_sweep_file_of_named_arms_runs_and_reports_each_arm_by_its_name(tmp_path):
    """Arms that share their options (the demo's baseline and its equal-compute twin) are two cells,
    told apart in results.md by their names."""
    path = tmp_path / "arms.yaml"
    path.write_text("base: train.yaml\neval_data: test.jsonl\nseeds: [82, 23]\narms:\n  baseline: {regular: true}\n"
                    "  jepa: {k: 1, lambda: 1.0}\n  plain_again: {regular: true}\n"
                    "equal_compute: {plain_again: jepa}\n")
    _fake.CALLS.clear()
    out = tmp_path / "out"
    first = sweep(path, out, run_fn=_fake.fake_run)
    assert sorted(_fake.CALLS) == sorted((f"{arm}__seed{s}", False) for arm in ("baseline", "jepa", "plain_again")
                                         for s in (82, 23))
    cells = {row["cell_id"]: row for row in first["cells"]}
    assert cells["jepa"]["p_value"] == pytest.approx(0.0151, abs=5e-4) and cells["plain_again"]["mean"] == \
        cells["baseline"]["mean"]
    table = (out / "results.md").read_text()
    assert table.startswith("| arm | k | lambda | regular | n |")
    assert "| plain_again |  |  | True | 2 |" in table and "| jepa | 1 | 1.0 |  | 2 |" in table
    saved = json.loads((out / "runs" / "plain_again__seed82" / "run.json").read_text())
    assert saved["compute_reference"] == {"k": 1, "lambda": 1.0, "seed": 82}
    assert sweep(path, out, run_fn=_fake.fake_run)["ran"] == []
