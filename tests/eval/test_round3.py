"""Evaluation options that were swallowed or recorded wrongly, an invalid summary.json, and a full disk
(issue 27)."""

import errno
import json
import pathlib
import re

import pytest

from llm_jepa.cli import main
from llm_jepa.eval.generate import GenerationSettings
from llm_jepa.eval.runner import evaluate
from tests.eval.test_runner import ckpt, data  # noqa: F401 (fixtures)


@pytest.mark.parametrize("option", ["limt", "equivalance"])
def test_a_metric_option_the_task_does_not_read_is_named(ckpt, data, tmp_path, option):  # noqa: F811
    # red team: every task's score(**_) swallowed a typo'd option
    with pytest.raises(ValueError, match=rf"unknown option '{option}' for task regex \(it takes: equivalence"):
        evaluate(str(ckpt), data, output=tmp_path / "e", quiet=True, **{option: 5})
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("flag", [["--temperature", "0.3"], ["--top-p", "0.5"], ["--top-k", "5"]])
def test_sampling_settings_without_sampling_are_refused(ckpt, data, tmp_path, capsys, flag):  # noqa: F811
    # red team: greedy decoding ignored them while eval_run.json recorded them as used
    argv = ["eval", "--model", str(ckpt), "--data", str(data), "--output", str(tmp_path / "e"), "--limit", "2",
            "--max-new-tokens", "4", *flag]
    assert main(argv) == 2
    assert f"{flag[0]} only act when sampling" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert main([*argv, "--sample"]) == 0  # with sampling they act, and are recorded
    assert json.loads((tmp_path / "e" / "eval_run.json").read_text())["generation"]["do_sample"] is True


def test_a_summary_whose_metrics_are_all_undecided_is_valid_json(ckpt, data, tmp_path, monkeypatch):  # noqa: F811
    # red team: summary.json held NaN (not JSON) when no row decided the primary metric
    from llm_jepa.eval.tasks import regex

    monkeypatch.setattr(regex, "score", lambda generation, example, *, equivalence=True, **_: {"exact": None})
    evaluate(str(ckpt), data, output=tmp_path / "e", quiet=True, similarity=False,
             generation=GenerationSettings(max_new_tokens=2))
    text = (tmp_path / "e" / "summary.json").read_text()
    summary = json.loads(text, parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["accuracy"] is None and summary["ci95"] == [None, None]
    assert summary["metrics"]["exact"]["undecided"] == len(data.read_text().splitlines())


def _full_disk_on(monkeypatch, name):
    """Writes to a file whose name holds ``name`` fail as on a full disk (after the open, as they do)."""
    real_open = pathlib.Path.open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, chunk):
            raise OSError(errno.ENOSPC, "No space left on device")

        writelines = write

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, attr):
            return getattr(self.f, attr)

    def fake_open(self, mode="r", *a, **k):
        f = real_open(self, mode, *a, **k)
        return Full(f) if name in self.name and ("w" in mode or "a" in mode) else f

    monkeypatch.setattr(pathlib.Path, "open", fake_open)


@pytest.mark.parametrize("name", ["summary.json", "predictions.jsonl"])
def test_a_full_disk_is_one_line_leaves_no_half_summary_and_the_same_command_runs_again(
        ckpt, data, tmp_path, monkeypatch, capsys, name):  # noqa: F811
    # red team: a full disk gave a raw traceback and an empty summary.json
    out = tmp_path / "e"
    argv = ["eval", "--model", str(ckpt), "--data", str(data), "--output", str(out), "--limit", "3",
            "--max-new-tokens", "4", "--no-similarity"]
    _full_disk_on(monkeypatch, name)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "No space left on device: cannot write" in err and re.search("run the (same )?command again", err)
    assert "Traceback" not in err
    assert not (out / "summary.json").exists() and not list(out.glob(".*partial"))
    monkeypatch.undo()
    assert main(argv) == 0  # no --overwrite needed: the predictions so far are reused
    assert json.loads((out / "summary.json").read_text())["n"] == 3
