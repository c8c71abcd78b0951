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
