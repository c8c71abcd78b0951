"""A sweep file's unknown keys are named before any run (issue 27): a typo in ``eval:`` was swallowed
by the task's score(**_), and a typo'd grid key failed every run with only "no finished runs"."""

import pytest

from llm_jepa.cli import main
from llm_jepa.sweep.cli import sweep
from llm_jepa.sweep.grid import SweepError, check_keys, sweep_from_dict

BASE = {"base": "train.yaml", "eval_data": "test.jsonl", "grid": {"k": [1]}, "seeds": [1]}


@pytest.mark.parametrize("extra,field", [
    ({"grid": {"lamda": [1.0]}}, "grid.lamda"),
    ({"fixed": {"learnig_rate": 0.1}}, "fixed.learnig_rate"),
    ({"baseline": {"regulr": True}}, "baseline.regulr"),
    ({"eval": {"limt": 5}}, "eval.limt"),
    ({"eval": {"task": "regex", "equivalance": False}}, "eval.equivalance"),
])
def test_an_unknown_key_is_named(extra, field):
    with pytest.raises(SweepError, match=rf"field '{field}'"):
        check_keys(sweep_from_dict({**BASE, **extra}))


def test_known_keys_pass():
    check_keys(sweep_from_dict({**BASE, "grid": {"lambda": [1.0], "predictors": [1, 2]}, "fixed": {"max_steps": 3},
                                "baseline": {"regular": True},
                                "eval": {"limit": 5, "equivalence": False, "max_new_tokens": 8, "separator": " "}}))


def test_the_command_names_the_key_before_running_anything(tmp_path, capsys):
    path = tmp_path / "sweep.yaml"
    path.write_text("base: train.yaml\neval_data: test.jsonl\ngrid: {lamda: [1.0]}\nseeds: [1]\n")
    assert main(["sweep", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "field 'grid.lamda': not a training option" in capsys.readouterr().err
    assert main(["sweep", str(path), "--output", str(tmp_path / "out"), "--dry-run"]) == 2
    assert not (tmp_path / "out").exists()


def _failing(run, run_dir, *, resume=False):
    raise RuntimeError("boom: the reason")


def test_when_every_run_fails_the_error_says_why(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("base: train.yaml\neval_data: test.jsonl\ngrid: {k: [1]}\nseeds: [1]\n")
    with pytest.raises(ValueError, match=r"no finished runs to report; 1 failed, first k=1__seed1: .*boom: the reason"):
        sweep(path, tmp_path / "out", run_fn=_failing)
