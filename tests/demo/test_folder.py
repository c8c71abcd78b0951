"""The demo's folder through the run record (issues 27 and 30): a foreign folder is moved aside,
never written into; the folder is locked while the demo runs; every option is checked before
anything is written; a refused rerun names the settings that differ."""

import json

import pytest

from llm_jepa.cli import main
from llm_jepa.demo import run as demo_run
from llm_jepa.demo.run import DemoConfig, run_demo
from llm_jepa.runrecord import OutputLock, OutputLockedError, move_aside

SMALL = dict(steps=2, batch_size=4, n_train=40, n_test=4, size="micro", n_analysis=4, max_new_tokens=4,
             arms=["baseline"])


class _Stop(Exception):
    """Raised where the test has seen what it needs (before any arm trains)."""


def _stop_before_the_base_model(monkeypatch, check=lambda cfg, out: None):
    def stop(cfg, out, train_file):
        check(cfg, out)
        raise _Stop

    monkeypatch.setattr(demo_run, "_base_checkpoint", stop)


def test_overwrite_of_a_folder_that_is_no_demo_moves_it_aside(tmp_path, monkeypatch, capsys):
    # issue 27: it overwrote the user's proj/data/train.jsonl and wrote proj/base/ beside the user's
    # files; a folder holding data/train.jsonl and data/test.jsonl was used as the demo's data
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    mine = {"train.jsonl": '{"mine": 1}\n', "test.jsonl": '{"mine": 2}\n'}
    for name, text in mine.items():
        (proj / "data" / name).write_text(text)
    (proj / "notes.txt").write_text("keep")
    _stop_before_the_base_model(monkeypatch)
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output=str(proj), overwrite=True, **SMALL))
    backup = tmp_path / "proj.previous-1"
    assert f"its contents moved to {backup}" in capsys.readouterr().out
    assert {n: (backup / "data" / n).read_text() for n in mine} == mine and (backup / "notes.txt").is_file()
    assert (proj / "data" / "train.jsonl").read_text() != mine["train.jsonl"]  # the demo's own data
    assert sorted(p.name for p in proj.iterdir()) == ["data", "demo_config.json"]


def test_the_demo_folder_is_locked_while_the_demo_runs(tmp_path, monkeypatch):
    # issue 27: the demo took no lock: a second demo, or train --overwrite of the folder above, moved
    # its files away under it
    out = tmp_path / "par" / "demo"

    def while_running(cfg, folder):
        with pytest.raises(OutputLockedError, match=r"in use by another llm-jepa demo \(pid"):
            OutputLock(folder).acquire()
        with pytest.raises(OutputLockedError, match=r"cannot be moved aside: .*demo \(demo \(pid"):
            move_aside(tmp_path / "par")

    _stop_before_the_base_model(monkeypatch, while_running)
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output=str(out), **SMALL))
    assert not (out / ".llm-jepa.lock").exists()  # released, and no lock file left


@pytest.mark.parametrize("flags,needle", [
    (["--data", "{tmp}/typo.jsonl", "--test-data", "{tmp}/test.jsonl"], "typo.jsonl: no such file (--data)"),
    (["--data", "{tmp}/test.jsonl"], "--data needs --test-data"),
    # issue 27: --test-data without --data was ignored, yet recorded in results.json
    (["--test-data", "{tmp}/test.jsonl"], "--test-data needs --data"),
])
def test_options_that_fail_are_refused_before_the_record_is_written(tmp_path, capsys, flags, needle):
    # issue 30: demo_config.json was written first, so the corrected command was 'another demo'
    (tmp_path / "test.jsonl").write_text('{"messages": []}\n')
    out = tmp_path / "out"
    code = main(["demo", "--output", str(out), "--size", "micro", *[f.format(tmp=tmp_path) for f in flags]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_refused_rerun_names_the_settings_that_differ(tmp_path, monkeypatch):
    # issue 30: "holds a demo run with other settings" did not say which
    out = tmp_path / "out"
    _stop_before_the_base_model(monkeypatch)
    with pytest.raises(_Stop):
        run_demo(DemoConfig(output=str(out), **SMALL))
    recorded = json.loads((out / "demo_config.json").read_text())
    with pytest.raises(FileExistsError, match=r"other settings \(n_test 4 -> 5, steps 2 -> 3\)"):
        run_demo(DemoConfig(output=str(out), **{**SMALL, "steps": 3, "n_test": 5}))
    assert json.loads((out / "demo_config.json").read_text()) == recorded


def test_an_empty_output_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--output is empty"):
        run_demo(DemoConfig(output="", **SMALL))
    assert list(tmp_path.iterdir()) == []
