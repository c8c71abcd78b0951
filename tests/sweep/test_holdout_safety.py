"""A holdout sweep's split is written only by a real run, into a folder that is the sweep's, under its
lock; --report-only and --dry-run only read it. Speed-only options (threads, streaming) change no run."""

import argparse
import json

import pytest

from llm_jepa.runrecord import OutputLock
from llm_jepa.sweep.cli import _dry_run, sweep
from llm_jepa.sweep.grid import expand, load_sweep
from llm_jepa.sweep.runner import run_key

from . import _fake

SWEEP = """\
base: train.yaml
eval_data: test.jsonl
grid:
  k: [1]
  lambda: [1.0]
baseline: {regular: true}
seeds: [82]
holdout: {rows: 2, seed: 0}
"""


@pytest.fixture
def sweep_file(tmp_path):
    (tmp_path / "train.yaml").write_text(f"output_dir: x\nmax_steps: 4\ntrain_file: {tmp_path / 'train.jsonl'}\n")
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"messages": [], "i": i}) + "\n" for i in range(8)))
    (tmp_path / "test.jsonl").write_text('{"messages": []}\n')
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    _fake.CALLS.clear()
    return path


def _listed(capsys) -> list[str]:
    return [line.split()[0] for line in capsys.readouterr().out.splitlines() if not line.startswith("note:")][:-1]


def test_report_only_writes_no_split_into_a_users_folder(tmp_path, sweep_file):
    user = tmp_path / "userdir2"
    (user / "data").mkdir(parents=True)
    (user / "data" / "train.jsonl").write_text("my rows\n")
    with pytest.raises(ValueError, match="no finished runs to report"):
        sweep(sweep_file, user, report_only=True)
    assert (user / "data" / "train.jsonl").read_text() == "my rows\n"
    assert sorted(p.name for p in (user / "data").iterdir()) == ["train.jsonl"]
    with pytest.raises(ValueError, match="no finished runs to report"):
        sweep(sweep_file, tmp_path / "missing" / "deeper", report_only=True)
    assert not (tmp_path / "missing").exists()  # no folder created


def test_report_only_and_dry_run_write_nothing_into_a_locked_folder(tmp_path, sweep_file, capsys):
    from llm_jepa.runrecord import OutputLockedError

    busy = tmp_path / "busy"
    with OutputLock(busy, "train"):  # a training runs there
        before = sorted(p.name for p in busy.iterdir())
        with pytest.raises(OutputLockedError, match="in use by another llm-jepa train"):  # refused at once
            sweep(sweep_file, busy, report_only=True)
        _dry_run(argparse.Namespace(sweep_file=str(sweep_file), output=str(busy)))
        assert sorted(p.name for p in busy.iterdir()) == before
    assert "holds no sweep" in capsys.readouterr().out


def test_dry_run_of_a_finished_holdout_sweep_shows_its_runs_done(tmp_path, sweep_file, capsys):
    out = tmp_path / "out"
    sweep(sweep_file, out, run_fn=_fake.fake_run)
    capsys.readouterr()
    _dry_run(argparse.Namespace(sweep_file=str(sweep_file), output=str(out)))
    assert _listed(capsys) == ["done", "done"]
    assert len(sweep(sweep_file, out, report_only=True)["cells"]) == 2


def test_a_changed_training_file_makes_the_runs_stale_and_keeps_their_split(tmp_path, sweep_file, capsys):
    out = tmp_path / "out"
    sweep(sweep_file, out, run_fn=_fake.fake_run)
    split = {p.name: p.read_text() for p in (out / "data").iterdir()}
    with (tmp_path / "train.jsonl").open("a") as f:
        f.write(json.dumps({"messages": [], "i": 99}) + "\n")
    capsys.readouterr()
    with pytest.raises(ValueError, match="no finished runs to report"):
        sweep(sweep_file, out, report_only=True)
    assert "changed since the holdout split" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in (out / "data").iterdir()} == split  # not rewritten by a report
    _dry_run(argparse.Namespace(sweep_file=str(sweep_file), output=str(out)))
    assert _listed(capsys) == ["stale", "stale"]
    assert {p.name: p.read_text() for p in (out / "data").iterdir()} == split
    again = sweep(sweep_file, out, run_fn=_fake.fake_run)  # the real run: split anew, runs again
    assert len(again["ran"]) == 2 and len(_fake.CALLS) == 4
    assert {p.name: p.read_text() for p in (out / "stale" / "data-1").iterdir()} == split  # the runs' old split kept
    assert (out / "data" / "train.jsonl").read_text() != split["train.jsonl"]


@pytest.mark.parametrize("extra", ["", "equal_compute: true\n"])  # also in the baseline's compute reference
def test_speed_only_options_change_no_finished_run(tmp_path, sweep_file, capsys, extra):
    out = tmp_path / "out"
    sweep_file.write_text(SWEEP + extra)
    sweep(sweep_file, out, run_fn=_fake.fake_run)
    sweep_file.write_text(SWEEP + extra + "fixed: {threads: 1, streaming: true, save_total_limit: 5}\n")
    capsys.readouterr()
    _dry_run(argparse.Namespace(sweep_file=str(sweep_file), output=str(out)))
    assert _listed(capsys) == ["done", "done"]
    assert sweep(sweep_file, out, run_fn=_fake.fake_run)["ran"] == [] and len(_fake.CALLS) == 2


def test_the_key_of_a_run_without_speed_options_is_unchanged(tmp_path, sweep_file):
    from llm_jepa.sweep.runner import _resolved_config

    sweep_file.write_text(SWEEP.replace("holdout: {rows: 2, seed: 0}\n", ""))
    plain = expand(load_sweep(sweep_file))[0]
    config = _resolved_config(plain)
    assert config["threads"] is None and config["streaming"] is False  # hashed as before the speed role was left out
    sweep_file.write_text(SWEEP.replace("holdout: {rows: 2, seed: 0}\n", "fixed: {threads: 3, streaming: true}\n"))
    fast = expand(load_sweep(sweep_file))[0]
    assert run_key(fast) == run_key(plain)
