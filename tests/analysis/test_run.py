import json
from types import SimpleNamespace

import pytest
import torch

from llm_jepa.analysis.run import analyze, format_table
from llm_jepa.views import ViewConfig

ROW = '{"messages": [{"role": "user", "content": "q%d"}, {"role": "assistant", "content": "a%d"}]}\n'


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(ROW % (i, i) for i in range(30)))
    return path


def _fake_encoder(calls):
    """Model "good": code = text @ M, pred = code (perfect predictor). Model "bad": everything collapsed."""

    def encode(model, tokenizer, examples, *, view, batch_size=16):
        calls.append((model, len(examples), view.predictors, batch_size))
        g = torch.Generator().manual_seed(0)
        text = torch.randn(len(examples), 8, generator=g)
        if model == "bad":
            text = torch.ones(len(examples), 8)
            return SimpleNamespace(text=text, pred=text.clone(), code=text.clone(), target=text.clone())
        code = text @ (torch.randn(8, 8, generator=g) + 3 * torch.eye(8))
        return SimpleNamespace(text=text, pred=code.clone(), code=code, target=code)

    return encode


def _fake_load(path, predictors=0, **settings):
    """A stand-in for load_run: the model is named after the path's last part; k as given."""
    return SimpleNamespace(model=str(path).split("/")[-1], tokenizer=None, view=ViewConfig(predictors=predictors))


def test_analyze_two_models_end_to_end(tmp_path, data):
    calls = []
    out = tmp_path / "out"
    result = analyze(["runs/good", "runs/bad"], data, output=out, limit=20, predictors=[2, 0], batch_size=4,
                     encode=_fake_encoder(calls), load=_fake_load)
    assert [c[1:] for c in calls] == [(20, 2, 4), (20, 0, 4)]
    saved = json.loads((out / "analysis.json").read_text())
    good, bad = saved["models"]["good"], saved["models"]["bad"]
    assert saved["n"] == 20 and good["predictors"] == 2
    assert good["retrieval_pred_to_code"]["top1"] == 1.0
    assert good["linear_residual_text_code"]["relative"] < 1e-6
    assert not good["collapse"]["code"]["collapsed"] and bad["collapse"]["code"]["collapsed"]
    assert len(good["singular_values_text_code"]) == 8
    assert (out / "singular_values.png").stat().st_size > 0 and (out / "tsne.png").stat().st_size > 0
    table = format_table(result)
    assert "good" in table and "YES" in table


def test_analyze_refuses_to_overwrite(tmp_path, data):
    out = tmp_path / "out"
    kwargs = dict(output=out, limit=5, predictors=0, encode=_fake_encoder([]), load=_fake_load)
    analyze(["good"], data, **kwargs)
    with pytest.raises(FileExistsError, match="overwrite"):
        analyze(["good"], data, **kwargs)
    analyze(["good"], data, overwrite=True, **kwargs)


@pytest.mark.parametrize("option", [{"batch_size": 0}, {"top": 0}, {"limit": -1}])
def test_bad_numbers_fail_before_anything_is_written(tmp_path, option):
    # red team: --batch-size 0 said "range() arg 3 must not be zero" after creating the output folder
    name = next(iter(option))
    with pytest.raises(ValueError, match=rf"{name} must be"):
        analyze(["m"], tmp_path / "d.jsonl", output=tmp_path / "o", **option)
    assert not (tmp_path / "o").exists()


def test_analyze_refuses_a_folder_a_training_holds(tmp_path, data):
    # red team: analyze --overwrite wrote its figures into a folder a running training held
    from llm_jepa.runrecord import OutputLock, OutputLockedError

    out = tmp_path / "busy"
    kwargs = dict(output=out, limit=5, predictors=0, encode=_fake_encoder([]), load=_fake_load)
    with OutputLock(out, "training"):
        before = sorted(p.name for p in out.iterdir())
        with pytest.raises(OutputLockedError, match=r"busy is in use by another llm-jepa training \(pid"):
            analyze(["good"], data, overwrite=True, **kwargs)
        assert sorted(p.name for p in out.iterdir()) == before
    analyze(["good"], data, overwrite=True, **kwargs)  # free again: it writes, and leaves no lock behind
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "singular_values.png", "tsne.png"]
