"""Training options that were accepted and did nothing, and runs that trained on nothing or saved half a
model (issue 27): each is refused with one line, or now acts as recorded."""

import errno
import json
import types

import pytest
import torch
from safetensors.torch import load_file

from llm_jepa.cli import main
from llm_jepa.config import ConfigError
from llm_jepa.train import NonFiniteError, NonFiniteGuard, train
from tests._factory import write_checkpoint
from tests.test_train import ROWS, _cfg, ckpt, data  # noqa: F401 (fixtures)


def _argv(ckpt, data, out, *extra):  # noqa: F811
    return ["train", "--model", str(ckpt), "--data", str(data), "--output_dir", str(out), "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "2",
            "--disable_tqdm", "true", *extra]


@pytest.mark.parametrize("flags,needle", [
    (["--label_smoothing_factor", "0.5"], "label_smoothing_factor 0.5 would be ignored"),
    (["--fp16", "true"], "--fp16 does nothing on CPU"),
    (["--loss_dropout", "1.0"], "loss_dropout must be in [0, 1)"),
])
def test_options_that_would_do_nothing_are_refused(ckpt, data, tmp_path, flags, needle):  # noqa: F811
    # red team: each was accepted; label smoothing and fp16 changed nothing (identical loss, no scaler, and
    # fp16 also turned the NaN guard off), loss_dropout 1 was plain training recorded as JEPA with k = 1
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(")", r"\)")):
        _cfg(ckpt, data, tmp_path / "run", *flags)
    assert not (tmp_path / "run").exists()


def test_the_nan_guard_runs_whenever_no_gradient_scaler_does():
    # red team: the guard stood aside on args.fp16 alone, and on CPU no scaler ran either
    model = torch.nn.Linear(2, 1)
    model.weight.grad = torch.full_like(model.weight, float("nan"))
    state = types.SimpleNamespace(global_step=3)
    guard = NonFiniteGuard("stop")
    guard.trainer = types.SimpleNamespace(accelerator=types.SimpleNamespace(scaler=None))
    with pytest.raises(NonFiniteError, match="step 4"):
        guard.on_pre_optimizer_step(types.SimpleNamespace(fp16=True), state, None, model=model)
    guard.trainer.accelerator.scaler = object()  # a scaler skips the step itself
    guard.on_pre_optimizer_step(types.SimpleNamespace(fp16=True), state, None, model=model)


def test_more_train_rows_than_the_data_is_refused_before_any_write(ckpt, data, tmp_path, capsys):  # noqa: F811
    # red team: all 16 rows ran while the config recorded train_rows 100 (a sweep's data_rows cell mislabelled)
    assert main(_argv(ckpt, data, tmp_path / "run", "--train_rows", "100")) == 2
    err = capsys.readouterr().err
    assert "train_rows 100 is more than the 16 rows" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("regular,streaming", [(True, False), (False, False), (True, True)])
def test_a_max_length_that_leaves_no_answer_token_fails(ckpt, data, tmp_path, capsys, regular, streaming):  # noqa: F811
    # red team: --regular --max_length 8 trained on nothing (loss 0) and exited 0; without --regular the
    # run was silently JEPA-only
    from tests._factory import conv, write_rows

    system = "Convert natural language to regular expression. " * 4  # in the prompt, not in the views
    data = write_rows(tmp_path / "long.jsonl", [conv(f"lines with '{w}'", f"({w})", system) for w in "abcd"])
    # --streaming: rows are tokenized in the data loader, and the check ran on none of them (red team: loss 0, exit 0)
    flags = ["--max_length", "24", *(["--regular", "true"] if regular else []),
             *(["--streaming", "true"] if streaming else [])]
    assert main(_argv(ckpt, data, tmp_path / "run", *flags)) == 2
    err = capsys.readouterr().err
    assert "no row keeps an answer token within max_length=24" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert main(_argv(ckpt, data, tmp_path / "run", "--max_length", "128")) == 0  # the rerun is not refused


def test_a_full_disk_at_the_final_save_leaves_no_half_model_and_resume_saves_it(ckpt, data, tmp_path,  # noqa: F811
                                                                                monkeypatch, capsys):
    # red team: the final save died with a traceback, leaving config.json without weights
    import transformers.modeling_utils as mu

    original = mu.safe_save_file

    def full(tensors, filename, *a, **k):
        if ".final-staging" in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(tensors, filename, *a, **k)

    monkeypatch.setattr(mu, "safe_save_file", full)
    out = tmp_path / "run"
    assert main(_argv(ckpt, data, out)) == 2
    err = capsys.readouterr().err
    assert "No space left on device: cannot write" in err and "--resume" in err and "Traceback" not in err
    assert not (out / "config.json").exists() and not (out / ".final-staging").exists()
    assert (out / "checkpoint-2" / "model.safetensors").exists()
    monkeypatch.setattr(mu, "safe_save_file", original)
    assert main(_argv(ckpt, data, out, "--resume", "true")) == 0
    assert (out / "model.safetensors").exists() and (out / "train_results.json").exists()


def test_a_lora_adapter_of_a_relative_base_merges_into_that_base_from_any_directory(tmp_path, monkeypatch):
    # red team: --model ckpt saved base_model_name_or_path "ckpt"; evaluated from a directory with
    # another ckpt, the adapter was merged into that one (similarity 0.154 against 0.106)
    from llm_jepa.runs import load_run
    from tests._factory import write_rows

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    write_checkpoint(here / "ckpt")
    write_checkpoint(there / "ckpt", seed=1)  # another model under the same relative name
    write_rows(here / "train.jsonl", ROWS)
    monkeypatch.chdir(here)
    train(_cfg("ckpt", "train.jsonl", "run", "--lora", "true", "--lora_r", "4", "--max_steps", "1"))
    config = json.loads((here / "run" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((here / "ckpt").resolve())
    base = load_file(here / "ckpt" / "model.safetensors")["model.norm.weight"]
    monkeypatch.chdir(there)
    for relative in (False, True):  # as saved now, and as older versions saved it
        if relative:
            (here / "run" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "ckpt"}))
        merged = load_run(here / "run").load_weights(device="cpu")
        assert torch.equal(merged.model.norm.weight.detach(), base)  # LoRA leaves the norm: the base's own


def test_trainer_options_read_around_the_loss_still_act(ckpt, data, tmp_path):  # noqa: F811
    # audit of the TrainingArguments the Trainer reads around compute_loss: counting input tokens works,
    # but its train_runtime in every step's log made each step a 'summary' record, so loss curves and
    # FLOPs totals (which read 'train' records) saw no step at all
    from llm_jepa.rundir import read_metrics

    out = tmp_path / "run"
    train(_cfg(ckpt, data, out, "--include_num_input_tokens_seen", "true", "--max_steps", "2"))
    steps = read_metrics(out / "metrics.jsonl", "train")
    assert [r["step"] for r in steps] == [1, 2]
    seen = [r["num_input_tokens_seen"] for r in steps]
    assert 0 < seen[0] < seen[1] and len(read_metrics(out / "metrics.jsonl", "summary")) == 1


def test_several_gpus_in_one_process_are_refused(ckpt, data, tmp_path, monkeypatch):  # noqa: F811
    # audit: Trainer.compute_loss scales the loss by n_gpu under DataParallel, which splits packed rows;
    # JepaTrainer.compute_loss replaces it, so that mode would run unscaled on split segments
    from llm_jepa.config import JepaConfig

    monkeypatch.setattr(JepaConfig, "n_gpu", property(lambda self: 2))
    with pytest.raises(ValueError, match="2 GPUs in one process"):
        train(_cfg(ckpt, data, tmp_path / "run", "--max_steps", "1"))
