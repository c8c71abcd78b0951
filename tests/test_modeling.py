"""Attention backend chosen automatically: a variable-length backend on CUDA (flash where it can run,
else flex), sdpa elsewhere."""

import importlib.util

import torch

from llm_jepa import modeling
from llm_jepa.modeling import choose_attention
from tests._factory import make_tokenizer, tiny_llama

_FIND_SPEC = importlib.util.find_spec


class _Recorder:
    def __init__(self, model):
        self.model, self.calls = model, []
        model.set_attn_implementation = lambda name: self.calls.append(name)


def _fake_gpu(monkeypatch, flash_installed=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" and flash_installed else _FIND_SPEC(name, *a))


def test_cpu_keeps_the_models_default():
    model = tiny_llama(make_tokenizer("chatml"))
    rec = _Recorder(model)
    assert choose_attention(model) == "sdpa" and rec.calls == []


def test_gpu_with_flash_attn_and_half_precision_picks_varlen_flash(monkeypatch):
    _fake_gpu(monkeypatch)
    model = tiny_llama(make_tokenizer("chatml")).to(torch.bfloat16)
    rec = _Recorder(model)
    choose_attention(model)
    assert rec.calls == ["flash_attention_2"]


def test_gpu_without_flash_attn_or_with_fp32_weights_picks_flex(monkeypatch):
    _fake_gpu(monkeypatch, flash_installed=False)
    half = _Recorder(tiny_llama(make_tokenizer("chatml")).to(torch.float16))
    choose_attention(half.model)
    _fake_gpu(monkeypatch)  # flash-attn installed, but it takes no fp32 weights
    fp32 = _Recorder(tiny_llama(make_tokenizer("chatml")))
    choose_attention(fp32.model)
    assert half.calls == ["flex_attention"] and fp32.calls == ["flex_attention"]


def test_gpu_without_flex_attention_falls_back_to_sdpa(monkeypatch):
    """Old torch (< 2.5) has no flex attention: 'auto' keeps sdpa with short packed rows."""
    _fake_gpu(monkeypatch, flash_installed=False)
    monkeypatch.setattr(modeling, "flex_attention_available", lambda: False)
    rec = _Recorder(tiny_llama(make_tokenizer("chatml")).to(torch.bfloat16))
    assert choose_attention(rec.model) == "sdpa" and rec.calls == []


def test_resolution_follows_the_device_asked_for_not_the_machine(monkeypatch):
    """The bench and training share one resolver: an explicit CPU device on a GPU machine keeps sdpa,
    a forced backend is kept as given."""
    _fake_gpu(monkeypatch, flash_installed=False)
    assert modeling.resolve_attention("auto", "cpu", torch.bfloat16) == "sdpa"
    assert modeling.resolve_attention("auto", "cuda:1", torch.float32) == "flex_attention"
    assert modeling.resolve_attention("eager", "cuda", torch.bfloat16) == "eager"


def test_a_model_family_without_the_backend_keeps_its_default(monkeypatch):
    _fake_gpu(monkeypatch, flash_installed=False)
    model = tiny_llama(make_tokenizer("chatml"))

    def refuse(name):
        raise ValueError(f"{name} is not supported")

    model.set_attn_implementation = refuse
    assert choose_attention(model) == "sdpa"


def test_training_shows_the_resolved_backend_in_its_banner_and_saved_config(tmp_path, capsys):
    """'auto' stays 'auto' in the saved config (the file must run on other machines too); what it
    resolved to is in the banner and recorded beside it."""
    from llm_jepa.config import load_config
    from llm_jepa.train import train
    from tests._factory import conv, write_run_inputs

    write_run_inputs(tmp_path, [conv(), conv("lines ending with a vowel", "(.*[aeiou])")])
    train(load_config(None, ["--model", str(tmp_path / "ckpt"), "--data", str(tmp_path / "train.jsonl"),
                             "--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--save_strategy", "no",
                             "--per_device_train_batch_size", "2", "--disable_tqdm", "true"]))
    saved = tmp_path / "run" / "llm_jepa_config.yaml"
    assert "# resolved on this machine: attn_implementation: sdpa\n" in saved.read_text()
    assert load_config(saved).attn_implementation == "auto"
    assert "; attention sdpa (auto)" in capsys.readouterr().err


def test_first_step_timer_reports_the_first_step_against_the_second(capsys):
    from types import SimpleNamespace

    from llm_jepa.train import FirstStepTimer

    timer = FirstStepTimer("includes torch.compile of flex attention")
    for step in (1, 2, 3):
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        timer.on_step_begin(None, state, None)
        timer.on_step_end(None, state, None)
    err = capsys.readouterr().err
    assert err.count("first step") == 1 and "(includes torch.compile of flex attention), second" in err
