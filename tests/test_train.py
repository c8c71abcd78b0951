"""End-to-end training on a tiny model: outputs, overwrite protection, resume, modes."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from llm_jepa.cli import main
from llm_jepa.config import load_config
from llm_jepa.train import train
from tests._factory import conv, make_tokenizer, tiny_llama, write_checkpoint, write_rows

ROWS = [
    conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}")
    for w in ("dog", "truck", "ring", "lake")
    for n in range(1, 5)
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "train.jsonl", ROWS)


def _cfg(ckpt, data, out, *extra):
    args = ["--model", str(ckpt), "--data", str(data), "--output_dir", str(out), "--max_steps", "4",
            "--per_device_train_batch_size", "4", "--logging_steps", "1", "--save_steps", "2",
            "--disable_tqdm", "true", "--learning_rate", "1e-3", "--seed", "5", *extra]
    return load_config(None, args)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_writes_outputs_and_refuses_to_overwrite(ckpt, data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(ckpt, data, out, "--k", "2"))
    for name in ("model.safetensors", "tokenizer.json", "llm_jepa_config.yaml", "metrics.jsonl", "train_results.json"):
        assert (out / name).exists(), name
    logs = [m for m in _metrics(out) if "lm_loss" in m]
    assert len(logs) == 4
    for key in ("lm_loss", "jepa_loss", "cosine", "learning_rate", "tokens_per_second"):
        assert all(key in m for m in logs), key
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        train(_cfg(ckpt, data, out))
    assert (out / "model.safetensors").read_bytes() == before


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt


def train_killed_after_step_3(cfg, monkeypatch) -> None:
    """``train(cfg)``, stopped as by a kill right after step 3 (its checkpoint-2 is on disk)."""
    from llm_jepa import trainer as trainer_mod

    init = trainer_mod.JepaTrainer.__init__

    def crashing_init(self, *a, **k):
        init(self, *a, **k)
        self.add_callback(_Crash())

    monkeypatch.setattr(trainer_mod.JepaTrainer, "__init__", crashing_init)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(trainer_mod.JepaTrainer, "__init__", init)


def test_resume_after_interruption_matches_uninterrupted(ckpt, data, tmp_path, monkeypatch):

    full, cut = tmp_path / "full", tmp_path / "cut"
    train(_cfg(ckpt, data, full, "--alpha", "0.5", "--seed", "7"))
    train_killed_after_step_3(_cfg(ckpt, data, cut, "--alpha", "0.5", "--seed", "7"), monkeypatch)
    assert (cut / "checkpoint-2").is_dir() and not (cut / "model.safetensors").exists()
    train(_cfg(ckpt, data, cut, "--alpha", "0.5", "--seed", "7", "--resume", "true"))
    a, b = load_file(full / "model.safetensors"), load_file(cut / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)

    def skipped(out):
        return [m["views_skipped"] for m in _metrics(out) if "views_skipped" in m]

    assert skipped(full)[2:] == skipped(cut)[-2:]  # the same loss-dropout decisions after resuming
    assert 0 < sum(skipped(full)) < 4  # and alpha = 0.5 did skip some batches, not all
    # the summary's train_runtime covers the resumed invocation only: it says which steps those were
    from llm_jepa.rundir import read_metrics

    (whole,), (resumed,) = read_metrics(full / "metrics.jsonl", "summary"), read_metrics(cut / "metrics.jsonl", "summary")
    assert (whole["resumed_from_step"], whole["steps_trained"]) == (0, 4)
    assert (resumed["resumed_from_step"], resumed["steps_trained"]) == (2, 2)


def test_regular_baseline_computes_no_views(ckpt, data, tmp_path):
    # --alpha 1.0 (every step drops its views) is refused since issue 27: it was plain training
    # recorded as JEPA (tests/test_train_round3.py::test_options_that_would_do_nothing_are_refused)
    for flag, out in ((["--regular", "true"], tmp_path / "reg"),):
        train(_cfg(ckpt, data, out, *flag))
        logs = [m for m in _metrics(out) if "lm_loss" in m]
        assert logs and all("jepa_loss" not in m for m in logs)
        assert all(m["view_token_fraction"] == 0 for m in logs)


@pytest.mark.parametrize("save", ["adapter", "merged"])
def test_lora_trains_adapters_and_predictor_embeddings(ckpt, data, tmp_path, save):
    out = tmp_path / save
    train(_cfg(ckpt, data, out, "--lora", "true", "--lora_r", "4", "--lora_save", save))
    if save == "adapter":
        assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
        keys = load_file(out / "adapter_model.safetensors").keys()
        assert any("lora_A" in k for k in keys) and any("trainable_tokens" in k for k in keys)
    else:
        assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
        merged, base = load_file(out / "model.safetensors"), load_file(ckpt / "model.safetensors")
        assert not torch.allclose(merged["model.layers.0.self_attn.q_proj.weight"],
                                  base["model.layers.0.self_attn.q_proj.weight"])


def test_pretrain_builds_seeded_random_weights(ckpt, data, tmp_path):
    from llm_jepa.train import build_components

    a = build_components(_cfg(ckpt, data, tmp_path / "a", "--pretrain", "true"))["model"]
    b = build_components(_cfg(ckpt, data, tmp_path / "b", "--pretrain", "true"))["model"]
    c = build_components(_cfg(ckpt, data, tmp_path / "c", "--pretrain", "true", "--seed", "6"))["model"]
    base = load_file(ckpt / "model.safetensors")
    w = "model.layers.0.mlp.up_proj.weight"
    sa, sb, sc = (m.state_dict()[w] for m in (a, b, c))
    assert torch.equal(sa, sb) and not torch.equal(sa, sc) and not torch.equal(sa, base[w])


def test_inspect_json_reports_the_loss_terms(ckpt, data, capsys):
    code = main(["inspect", "--model", str(ckpt), "--data", str(data), "--n", "2", "--k", "2", "--json", "true"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == pytest.approx(report["lm_loss"] + report["jepa_loss"], rel=1e-6)
    assert report["examples"][0]["pairs"][0]["source"]["anchor_token"] == "<|predictor_1|>"  # the released order
    assert "dog" in report["examples"][0]["conversation"][0]["labelled_text"]


def test_cli_unknown_option_is_a_clear_error(ckpt, data, tmp_path, capsys):
    code = main(["train", "--model", str(ckpt), "--data", str(data), "--output_dir", str(tmp_path / "x"),
                 "--lamda", "1"])
    assert code == 2 and "--lamda" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_baseline_can_monitor_the_jepa_distance_without_changing_training(ckpt, data, tmp_path):
    plain, watched = tmp_path / "plain", tmp_path / "watched"
    train(_cfg(ckpt, data, plain, "--regular", "true"))
    train(_cfg(ckpt, data, watched, "--regular", "true", "--monitor_views_every", "2"))
    logs = [m for m in _metrics(watched) if "lm_loss" in m]
    # named as monitored, never as a JEPA run's numbers (issue 30)
    assert [("monitor_jepa_loss" in m and "monitor_cosine" in m) for m in logs] == [True, False, True, False]
    assert not any(k in m for m in logs for k in ("jepa_loss", "cosine", "target_pairwise_cosine", "views_skipped"))
    # compute accounting: monitoring views are counted apart from the baseline's own FLOPs
    assert all(m["flops"] > 0 for m in logs)
    assert [m.get("monitor_flops", 0) > 0 for m in logs] == [True, False, True, False]
    plain_logs = [m for m in _metrics(plain) if "lm_loss" in m]
    for a, b in zip(plain_logs, logs, strict=True):
        assert b["flops"] - b.get("monitor_flops", 0) == pytest.approx(a["flops"], rel=1e-9)
    a, b = load_file(plain / "model.safetensors"), load_file(watched / "model.safetensors")
    for k in a:  # views are isolated and detached: the baseline's training is untouched
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5, msg=k)


def test_gradient_accumulation_gives_the_same_step_as_one_big_batch(ckpt, data, tmp_path):
    big, acc = tmp_path / "big", tmp_path / "acc"
    common = ("--max_steps", "1", "--learning_rate", "1e-2", "--k", "1")
    train(_cfg(ckpt, data, big, *common, "--per_device_train_batch_size", "4"))
    train(_cfg(ckpt, data, acc, *common, "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"))
    a, b = load_file(big / "model.safetensors"), load_file(acc / "model.safetensors")
    base = load_file(ckpt / "model.safetensors")
    assert not torch.allclose(a["model.norm.weight"], base["model.norm.weight"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)
    la, lb = ([m for m in _metrics(d) if "lm_loss" in m][0] for d in (big, acc))
    assert la["lm_loss"] == pytest.approx(lb["lm_loss"], rel=1e-4)
    assert la["jepa_loss"] == pytest.approx(lb["jepa_loss"], rel=1e-4)


def test_collapse_is_warned_about(ckpt, data, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="llm_jepa"):
        train(_cfg(ckpt, data, tmp_path / "c", "--max_steps", "12", "--learning_rate", "3e-2", "--lambda", "20"))
    logs = _metrics(tmp_path / "c")
    cos = [m["target_pairwise_cosine"] for m in logs if "target_pairwise_cosine" in m]
    base = logs[0]["base_target_pairwise_cosine"]  # the base model, measured before the first step
    assert "base_target_pairwise_cosine" not in logs[1]  # logged once
    collapsed = max((1 - base) / max(1 - c, 1e-12) for c in cos) >= 10  # 1 - cosine shrank tenfold
    assert collapsed == ("collapsed onto one direction" in caplog.text)
    assert f"up from {base:.4f} in the base model" in caplog.text
    assert collapsed  # a huge lambda and learning rate collapse this tiny model within a few steps
    ratios = [m["target_std_ratio"] for m in _metrics(tmp_path / "c") if "target_std_ratio" in m]
    assert len(ratios) == len(cos) and min(ratios) < 0.1 < ratios[0]  # the spread vanishes as targets collapse


def test_accuracy_callback_logs_accuracy_during_training(ckpt, data, tmp_path):
    """Reachable from the command line: --accuracy_every_steps scores --eval_file's rows while training."""
    out = tmp_path / "acc"
    code = main(["train", "--model", str(ckpt), "--data", str(data), "--eval_file", str(data), "--output_dir", str(out),
                 "--max_steps", "4", "--per_device_train_batch_size", "4", "--logging_steps", "1",
                 "--save_strategy", "no", "--disable_tqdm", "true", "--accuracy_every_steps", "2",
                 "--accuracy_examples", "4", "--accuracy_task", "regex"])
    assert code == 0
    logged = [m for m in _metrics(out) if "eval_accuracy" in m]
    assert [m["step"] for m in logged] == [2, 4]
    assert all(0.0 <= m["eval_accuracy"] <= 1.0 and "eval_startswith" in m for m in logged)


def test_accuracy_without_eval_rows_or_task_is_refused_before_writing(ckpt, data, tmp_path):
    with pytest.raises(ValueError, match="--eval_file"):
        train(_cfg(ckpt, data, tmp_path / "none", "--accuracy_every_steps", "2"))
    with pytest.raises(ValueError, match="cannot tell the task"):
        train(_cfg(ckpt, data, tmp_path / "none", "--accuracy_every_steps", "2", "--eval_file", str(data)))
    assert not (tmp_path / "none").exists()


def test_accuracy_options_a_task_cannot_run_with_are_refused_before_writing(ckpt, data, tmp_path):
    # red team: a Spider --eval_file trained until step 1, then died with "spider needs --db-dir" and
    # left llm_jepa_config.yaml, so the rerun was refused as "not empty"; -1 switched scoring on
    spider = tmp_path / "spider.jsonl"
    spider.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Convert natural language to SQL."},
        {"role": "user", "content": "For db_id:[shop]\n\nHow many rows?"},
        {"role": "assistant", "content": "SELECT count(*) FROM t"}]}) + "\n")
    for extra, needle in ((["--eval_file", str(spider)], "spider needs --db-dir"),
                          (["--eval_file", str(data), "--accuracy_every_steps", "-1"], "accuracy_every_steps must be"),
                          (["--eval_file", str(data), "--accuracy_examples", "0"], "accuracy_examples must be")):
        with pytest.raises(ValueError, match=needle):
            train(_cfg(ckpt, data, tmp_path / "none", "--accuracy_every_steps", "2", *extra))
        assert not (tmp_path / "none").exists()


def test_plain_text_mode_trains_without_a_chat_template(tmp_path, data):
    tok = make_tokenizer("plain")
    tiny_llama(tok).save_pretrained(tmp_path / "plain_ckpt")
    tok.save_pretrained(tmp_path / "plain_ckpt")
    out = tmp_path / "plain_run"
    train(_cfg(tmp_path / "plain_ckpt", data, out, "--plain_text", "true", "--separator", " => "))
    logs = [m for m in _metrics(out) if "jepa_loss" in m]
    assert logs and all(m["lm_loss"] > 0 for m in logs)
