"""SmolLM2-135M-Instruct end to end: conversion, the real ChatML template's views and anchors,
one training step (full and LoRA), and evaluation of a few NL-RX-SYNTH rows."""

from __future__ import annotations

import json
import math

import pytest
import torch

from llm_jepa.data import load_examples
from llm_jepa.views import PREDICTOR_TOKENS, ViewBuilder, ViewConfig

from .conftest import NAME

PROBE = "What is the capital of France?"


def _greedy(model, tok, prompt: str, max_new_tokens: int = 16) -> str:
    text = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_converted_checkpoint_round_trips(real_model_dir):
    """An ordinary checkpoint: plain from_pretrained loads it, tied embeddings stay tied, its
    generation config stops at <|im_end|>, and it answers the probe as the GGUF model does."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(real_model_dir)
    model = AutoModelForCausalLM.from_pretrained(real_model_dir).eval()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    end_of_turn = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in ([model.generation_config.eos_token_id] if isinstance(model.generation_config.eos_token_id, int)
                           else model.generation_config.eos_token_id)
    assert tok.pad_token is not None and "quantization_config" not in model.config.to_dict()
    assert _greedy(model, tok, PROBE) == "The capital of France is Paris."


def test_the_name_resolves_to_the_same_checkpoint_without_converting_again(real_model_dir, monkeypatch):
    from llm_jepa import realmodel

    monkeypatch.setattr(realmodel, "_convert", lambda *a: pytest.fail("converted a second time"))
    assert realmodel.resolve_model_path(NAME) == str(real_model_dir)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_anchors_on_the_real_chatml_template(real_tokenizer, synth, k):
    """Every example of a packed batch: the source view ends in the released order
    <|predictor_k|>...<|predictor_1|> and its anchor is <|predictor_1|> (the last content token when
    k = 0); the token after every anchor is <|im_end|>; the target's anchor is the last token of the
    answer."""
    from llm_jepa.collator import PackingCollator

    tok = real_tokenizer
    examples = load_examples(synth[0])
    builder = ViewBuilder(tok, ViewConfig(predictors=k))
    items = [builder(ex) for ex in examples]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=-1)(items)
    ids, src, tgt = batch["input_ids"], batch["source_anchor"], batch["target_anchor"]
    assert len(src) == len(tgt) == len(examples)  # one (source, target) pair per example, in order
    end = tok.convert_tokens_to_ids("<|im_end|>")
    for i, ex in enumerate(examples):
        (r_s, c_s), (r_t, c_t) = src[i].tolist(), tgt[i].tolist()
        assert ids[r_s, c_s + 1] == end and ids[r_t, c_t + 1] == end
        if k:
            released = [tok.convert_tokens_to_ids(t) for t in reversed(PREDICTOR_TOKENS[:k])]
            assert ids[r_s, c_s - k + 1 : c_s + 1].tolist() == released
        else:
            assert tok.decode(ids[r_s, : c_s + 1]).endswith(ex.text_view.strip()[-3:])
        assert tok.decode(ids[r_t, : c_t + 1]).endswith(ex.code_view.strip()[-3:])


def test_lm_labels_cover_the_answer_and_its_end_of_turn(real_tokenizer, synth):
    ex = load_examples(synth[0], 1)[0]
    seg = ViewBuilder(real_tokenizer, ViewConfig())(ex).lm[0]
    kept = [t for t, lab in zip(seg.input_ids, seg.labels, strict=True) if lab != -100]
    assert real_tokenizer.decode(kept) == ex.assistant + "<|im_end|>"


def test_view_system_on_the_real_template(real_tokenizer, synth):
    ex = load_examples(synth[0], 1)[0]
    text = {v: real_tokenizer.decode(ViewBuilder(real_tokenizer, ViewConfig(view_system=v)).view(ex.user, "user", True)
                                     .input_ids) for v in ("default", "empty", "none")}
    assert "You are a helpful AI assistant named SmolLM" in text["default"]  # the template's default
    assert text["empty"].startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n")
    assert text["none"].startswith("<|im_start|>user\n" + ex.user)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_one_training_step_has_finite_losses(synth, real_cache, tmp_path, lora):
    from llm_jepa.config import load_config
    from llm_jepa.train import train

    args = ["--model", NAME, "--data", str(synth[0]), "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--limit", "4", "--logging_steps", "1", "--save_strategy", "no",
            "--learning_rate", "1e-4", "--k", "1", "--view_system", "none", "--threads", "2",
            "--disable_tqdm", "true", "--report_to", "none"]
    if lora:
        args += ["--lora", "true", "--lora_r", "4"]
    train(load_config(None, args))
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][0]
    assert math.isfinite(log["lm_loss"]) and math.isfinite(log["jepa_loss"]) and math.isfinite(log["loss"])
    assert 0.3 < log["base_target_pairwise_cosine"] < 1  # the pretrained base's anisotropy, measured first
    assert log["lm_loss"] < 5  # a pretrained model, not random weights (ln 49k = 10.8)


def test_eval_of_a_few_synth_rows_end_to_end(synth, real_cache, tmp_path, capsys):
    from llm_jepa.cli import main

    out = tmp_path / "eval"
    rc = main(["eval", "--model", NAME, "--data", str(synth[1]), "--output", str(out), "--limit", "4",
               "--max-new-tokens", "16", "--batch-size", "4", "--predictors", "1", "--threads", "2"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 4 and summary["task"] == "regex" and "exact" in summary["metrics"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 4 and all(p["generation"].strip() for p in preds)
    assert summary["similarity_measure"].startswith("cos(Pred(Enc(Text)), Enc(Code)) with k=1")
    assert "cos(Pred(Enc(Text)), Enc(Code)) with k=1" in capsys.readouterr().out
