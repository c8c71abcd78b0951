"""analyze: one label per model, never two models under one; a full disk writes nothing half and lets
the same command run again (issue 27)."""

import errno
import json

import pytest

from llm_jepa.analysis.run import analyze
from tests.analysis.test_run import _fake_encoder, _fake_load, data  # noqa: F401 (fixture)


def _load(path, predictors=0, **settings):
    run = _fake_load("good" if "bad" not in str(path) else "bad", predictors, **settings)
    run.plain_text = False
    return run


def test_models_sharing_a_tail_get_labels_that_tell_them_apart(tmp_path, data):  # noqa: F811
    # red team: m1/x/run and m2/x/run were both labelled x/run and one replaced the other
    out = tmp_path / "out"
    result = analyze(["m1/x/run", "m2/x/run", "m2/x/bad"], data, output=out, limit=6, predictors=0,
                     encode=_fake_encoder([]), load=_load)
    assert sorted(result["models"]) == ["bad", "m1/x/run", "m2/x/run"]
    assert sorted(json.loads((out / "analysis.json").read_text())["models"]) == ["bad", "m1/x/run", "m2/x/run"]


def test_the_same_model_twice_is_labelled_by_its_settings_or_refused(tmp_path, data):  # noqa: F811
    kw = dict(limit=6, encode=_fake_encoder([]), load=_load)
    result = analyze(["runs/a", "./runs/a"], data, output=tmp_path / "k", predictors=[1, 2], **kw)
    assert sorted(result["models"]) == ["a (predictors=1)", "a (predictors=2)"]
    with pytest.raises(ValueError, match="given twice with the same settings"):
        analyze(["runs/a", "runs/a"], data, output=tmp_path / "same", predictors=0, **kw)


def test_a_full_disk_is_one_line_leaves_no_figure_and_the_same_command_runs_again(tmp_path, data, monkeypatch,  # noqa: F811
                                                                                 capsys):
    # red team: a full disk left a partial PNG, a traceback, and a folder a rerun refused
    from matplotlib.figure import Figure

    from llm_jepa.cli import main

    original = Figure.savefig

    def full(self, fname, *a, **k):
        original(self, fname, *a, **k)  # the bytes reach the file, then the disk is full
        if "tsne" in str(getattr(fname, "name", fname)):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full)
    monkeypatch.setattr("llm_jepa.analysis.run._default_load", lambda: _load)
    monkeypatch.setattr("llm_jepa.analysis.run._default_encode", lambda: _fake_encoder([]))
    monkeypatch.setattr("llm_jepa.analysis.straightness.trajectory_straightness", lambda *a, **k: None)
    out = tmp_path / "out"
    argv = ["analyze", "--model", "good", "--data", str(data), "--output", str(out), "--limit", "6"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "No space left on device: cannot write" in err and "Traceback" not in err
    assert not out.exists()  # no partial PNG, no first figure without the rest: the run leaves no folder
    monkeypatch.setattr(Figure, "savefig", original)
    assert main(argv) == 0  # not refused as a non-empty folder
    assert (out / "tsne.png").stat().st_size > 0 and (out / "analysis.json").is_file()
