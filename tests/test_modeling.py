"""Attention backend chosen automatically: flash attention only where it can run."""

import importlib.util

import torch

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


def test_fp32_weights_or_no_flash_attn_keep_sdpa(monkeypatch):
    _fake_gpu(monkeypatch)
    fp32 = _Recorder(tiny_llama(make_tokenizer("chatml")))
    choose_attention(fp32.model)
    _fake_gpu(monkeypatch, flash_installed=False)
    assert importlib.util.find_spec("flash_attn") is None or _FIND_SPEC("flash_attn") is not None
    half = _Recorder(tiny_llama(make_tokenizer("chatml")).to(torch.float16))
    choose_attention(half.model)
    assert fp32.calls == [] and half.calls == []
