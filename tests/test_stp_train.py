"""STP through the trainer: plain fine-tuning + STP (the STP paper's setting), with JEPA, with LoRA,
logged, resumed, validated."""

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from llm_jepa.collator import PackingCollator
from llm_jepa.config import ConfigError, load_config
from llm_jepa.train import train
from llm_jepa.trainer import StepSync
from tests._factory import conv, write_checkpoint, write_rows

ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "truck") for n in range(1, 5)]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "train.jsonl", ROWS)


def _cfg(ckpt, data, out, *extra):
    args = ["--model", str(ckpt), "--data", str(data), "--output_dir", str(out), "--max_steps", "3",
            "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "2",
            "--disable_tqdm", "true", "--learning_rate", "1e-3", "--seed", "5", "--stp_lambda", "0.5", *extra]
    return load_config(None, args)


def _logs(out):
    return [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "lm_loss" in m]


def test_regular_plus_stp_optimises_and_logs_the_term_with_no_view_token(ckpt, data, tmp_path):
    out = tmp_path / "stp"
    train(_cfg(ckpt, data, out, "--regular", "true", "--max_steps", "2"))
    logs = _logs(out)
    assert len(logs) == 2
    for m in logs:
        assert "jepa_loss" not in m and m["view_token_fraction"] == 0
        assert 0 <= m["stp_loss"] <= 2 and -1 <= m["stp_cosine"] <= 1
        # the optimised loss carries the STP term (the trainer once dropped every term when no view ran)
        assert m["loss"] == pytest.approx(m["lm_loss"] + 0.5 * m["stp_loss"], rel=1e-4)


def test_stp_and_jepa_together(ckpt, data, tmp_path):
    out = tmp_path / "both"
    train(_cfg(ckpt, data, out, "--max_steps", "1", "--stp_layer", "1", "--stp_sampling", "uniform"))
    (m,) = _logs(out)
    assert "jepa_loss" in m and "stp_loss" in m
    assert m["loss"] == pytest.approx(m["lm_loss"] + m["jepa_loss"] + 0.5 * m["stp_loss"], rel=1e-4)


def test_stp_with_lora_and_predictor_takes_a_step(ckpt, data, tmp_path):
    out = tmp_path / "lora"
    train(_cfg(ckpt, data, out, "--regular", "true", "--max_steps", "1", "--lora", "true", "--lora_r", "4",
               "--stp_predictor", "true"))
    (m,) = _logs(out)
    assert torch.isfinite(torch.tensor(m["stp_loss"]))
    keys = load_file(out / "adapter_model.safetensors").keys()
    assert any("lora_A" in k for k in keys)
    assert any("stp_predictor" in k for k in keys)
    # a model without the predictor (inference) still loads the adapter
    from llm_jepa.runs import load_run

    run = load_run(out)
    assert not hasattr(run.model, "stp_predictor")


@pytest.mark.parametrize("extra", [(), ("--lora", "true", "--lora_r", "4", "--stp_predictor", "true")],
                         ids=["full", "lora-predictor"])
def test_resumed_stp_run_matches_the_uninterrupted_one(ckpt, data, tmp_path, monkeypatch, extra):
    """With LoRA the STP predictor once lived outside the adapter: a resumed run restarted it from its
    initial weights (under the restored optimizer state) and the saved adapter lacked it."""
    from transformers import TrainerCallback

    from llm_jepa import trainer as trainer_mod

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    flags = ("--regular", "true", "--max_steps", "4", "--stp_times", "2", "--num_train_epochs", "2", *extra)
    full, cut = tmp_path / "full", tmp_path / "cut"
    train(_cfg(ckpt, data, full, *flags))
    init = trainer_mod.JepaTrainer.__init__

    def crashing_init(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(Crash())

    monkeypatch.setattr(trainer_mod.JepaTrainer, "__init__", crashing_init)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(ckpt, data, cut, *flags))
    monkeypatch.setattr(trainer_mod.JepaTrainer, "__init__", init)
    train(_cfg(ckpt, data, cut, *flags, "--resume", "true"))
    assert [m["stp_loss"] for m in _logs(full)][2:] == pytest.approx([m["stp_loss"] for m in _logs(cut)][-2:],
                                                                      rel=1e-5)
    name = "adapter_model.safetensors" if extra else "model.safetensors"
    a, b = load_file(full / name), load_file(cut / name)
    if extra:
        assert any("stp_predictor" in k for k in a), sorted(a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def test_the_epoch_reaches_the_collator():
    collator = PackingCollator(0)
    sync = StepSync(collator)
    sync.on_epoch_begin(None, SimpleNamespace(epoch=2.0), None)
    assert collator._epoch == 2
    sync.on_epoch_begin(None, SimpleNamespace(epoch=None), None)
    assert collator._epoch == 0


@pytest.mark.parametrize("flag, value", [("--stp_times", "0"), ("--stp_max_span", "-2"), ("--stp_lambda", "-1")])
def test_bad_stp_options_are_config_errors(ckpt, data, tmp_path, flag, value):
    with pytest.raises(ConfigError, match=flag.lstrip("-")):
        _cfg(ckpt, data, tmp_path, flag, value)


def test_inspect_shows_the_spans_rest_patch_and_the_term(ckpt, data, tmp_path, capsys):
    from llm_jepa.cli import main

    code = main(["inspect", "--model", str(ckpt), "--data", str(data), "--n", "2", "--json", "true",
                 "--output_dir", str(tmp_path), "--stp_lambda", "0.02", "--stp_times", "3", "--regular", "true"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for ex in report["examples"]:
        assert len(ex["stp_spans"]) == 3
        for span in ex["stp_spans"]:
            s, t = span["span"]
            assert len(span["patch"]) == t - s and len(span["rest"]) == span["content_tokens"] - (t - s)
    assert set(report["terms"]) == {"stp_loss", "stp_cosine"}
    assert report["total"] == pytest.approx(report["lm_loss"] + 0.02 * report["terms"]["stp_loss"], rel=1e-5)


def test_a_layer_the_model_lacks_fails_before_anything_is_written(ckpt, data, tmp_path):
    out = tmp_path / "bad-layer"
    with pytest.raises(ValueError, match="stp_layer 9 is out of range: the model has 3 hidden states"):
        train(_cfg(ckpt, data, out, "--regular", "true", "--stp_layer", "9"))
    assert not (out / "llm_jepa_config.yaml").exists()
