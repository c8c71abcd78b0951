"""llm_jepa.trl against TRL's own SFTTrainer and against llm-jepa's inspect (the oracles of issue 26)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

pytest.importorskip("trl", reason="TRL is not installed (pip install 'llm-jepa[trl]')")

from datasets import Dataset  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

from llm_jepa.config import ConfigError, config_class, load_config  # noqa: E402
from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer, objective_fields, turn_of_tokens  # noqa: E402
from tests._factory import TEMPLATES, conv, make_tokenizer, tiny_llama, write_checkpoint  # noqa: E402

WORDS = ("dog", "truck", "ring", "lake")
MULTI = [{"messages": conv(f"lines with the string '{w}'", f"(.*{w}.*)")} for w in WORDS]
MULTI.append({"messages": conv("a", "b") + [{"role": "user", "content": "the dog again"},
                                            {"role": "assistant", "content": "(dog){2}"}]})
PROMPT_COMPLETION = [{"prompt": f"lines with '{w}' =>", "completion": f" (.*{w}.*)"} for w in WORDS]
PROMPT_COMPLETION_CHAT = [{"prompt": [{"role": "user", "content": f"the string '{w}'"}],
                           "completion": [{"role": "assistant", "content": f"(.*{w}.*)"}]} for w in WORDS]
TEXT = [{"text": f"lines with the string '{w}' are (.*{w}.*)"} for w in WORDS]
# ChatML with the {% generation %} tags that TRL's assistant_only_loss needs
GENERATION = ("{% for m in messages %}{% if m['role'] == 'assistant' %}<|im_start|>assistant\n{% generation %}"
              "{{ m['content'] }}<|im_end|>{% endgeneration %}\n{% else %}<|im_start|>{{ m['role'] }}\n"
              "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tok(template: str = "chatml"):
    tok = make_tokenizer("chatml")
    tok.chat_template = GENERATION if template == "generation" else TEMPLATES["chatml"]
    return tok


def _args(cls, out, rows, **kw):
    base = dict(output_dir=str(out), per_device_train_batch_size=len(rows), report_to=[], max_steps=1, use_cpu=True,
                max_length=None, seed=3, learning_rate=0.0, disable_tqdm=True, shuffle_dataset=False)
    return cls(**{**base, **kw})


def _step(cls, cfg, out, rows, tok=None, seed=1, **kw):
    """Loss and gradients of one batch holding every row."""
    tok = tok or _tok()
    model = tiny_llama(tok, seed=seed)
    trainer = cls(model=model, args=_args(cfg, out, rows, **kw), train_dataset=Dataset.from_list(rows),
                  processing_class=tok)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    model.train()
    loss = trainer.compute_loss(model, batch, num_items_in_batch=trainer._get_num_items_in_batch([batch], "cpu"))
    loss.backward()
    return loss.item(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}, trainer, batch


CASES = {
    "multi-turn": (MULTI, {}),
    "multi-turn padding-free": (MULTI, {"padding_free": True}),
    "multi-turn packing": (MULTI, {"packing": True, "max_length": 64}),
    # TRL's packing truncates each document to max_length from its start, whatever truncation_mode says
    "packing truncated": (MULTI, {"packing": True, "max_length": 16, "truncation_mode": "keep_end",
                                  "shuffle_dataset": True}),
    "assistant-only": (MULTI, {"assistant_only_loss": True}),
    "assistant-only packing": (MULTI, {"assistant_only_loss": True, "packing": True, "max_length": 64}),
    "prompt-completion": (PROMPT_COMPLETION, {}),
    "prompt-completion chat": (PROMPT_COMPLETION_CHAT, {}),
    "prompt-completion all tokens": (PROMPT_COMPLETION_CHAT, {"completion_only_loss": False}),
    "text": (TEXT, {}),
    "text packing": (TEXT, {"packing": True, "max_length": 32}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_with_both_weights_zero_loss_and_gradients_equal_sft_trainer(tmp_path, case):
    rows, kw = CASES[case]
    tok = _tok("generation" if kw.get("assistant_only_loss") else "chatml")
    a, grads_a, _, _ = _step(SFTTrainer, SFTConfig, tmp_path / "a", rows, tok, **kw)
    b, grads_b, _, batch = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path / "b", rows, tok, jepa_lambda=0.0, **kw)
    assert abs(a - b) < 1e-6, (a, b)
    assert grads_a.keys() == grads_b.keys()
    assert max((grads_a[k] - grads_b[k]).abs().max().item() for k in grads_a) < 1e-6
    assert batch["source_anchor"].numel() == 0  # no views at lambda 0


def test_the_oracle_sees_a_changed_objective(tmp_path, monkeypatch):
    """The comparison above can fail: a gamma of 0.5 in the objective is seen."""
    a, *_ = _step(SFTTrainer, SFTConfig, tmp_path / "a", MULTI)
    b, *_ = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path / "b", MULTI, jepa_lambda=0.0, gamma=0.5)
    assert abs(a - 2 * b) < 1e-5 and abs(a - b) > 1


def _accumulated_grads(tmp_path, rows, per_device, **kw):
    """Gradients of one optimiser step made of len(rows) / per_device micro-batches, each micro-batch's
    loss as the Trainer's training step sees it (num_items_in_batch over the whole step)."""
    tok = _tok()
    model = tiny_llama(tok, seed=1)
    args = _args(JepaSFTConfig, tmp_path, rows, per_device_train_batch_size=per_device, **kw)
    trainer = JepaSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batches = [trainer._prepare_inputs(b) for b in trainer.get_train_dataloader()]
    trainer.current_gradient_accumulation_steps = len(batches)
    n = trainer._get_num_items_in_batch(batches, "cpu")
    model.train()
    total = sum(trainer.compute_loss(model, b, num_items_in_batch=n) for b in batches)
    total.backward()
    return total.item(), {k: p.grad for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kw", [{"jepa_lambda": 0.0}, {"jepa_lambda": 1.0, "stp_lambda": 0.5, "stp_variant": "two_view"},
                                {"jepa_lambda": 0.0, "padding_free": True}], ids=["lm", "jepa+stp", "padding-free"])
def test_gradient_accumulation_equals_one_big_batch(tmp_path, kw):
    rows = MULTI[:4]
    big_loss, big = _accumulated_grads(tmp_path / "big", rows, 4, **kw)
    acc_loss, acc = _accumulated_grads(tmp_path / "acc", rows, 2, **kw)
    assert abs(big_loss - acc_loss) < 1e-6
    assert max((big[k] - acc[k]).abs().max().item() for k in big) < 1e-6
    assert max(g.abs().max().item() for g in big.values()) > 1e-3


def test_trained_step_with_accumulation_matches_one_big_batch(tmp_path):
    """Through Trainer.train (optimizer, clipping, the Trainer's own accumulation), at the tolerance
    llm-jepa's own accumulation test uses (TRL's SFTTrainer differs from itself by about as much)."""
    def weights(name, per_device, accumulation):
        tok = _tok()
        model = tiny_llama(tok, seed=1)
        args = _args(JepaSFTConfig, tmp_path / name, MULTI[:4], per_device_train_batch_size=per_device,
                     gradient_accumulation_steps=accumulation, learning_rate=1e-2, optim="sgd",
                     lr_scheduler_type="constant", save_strategy="no", stp_lambda=0.5)
        JepaSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(MULTI[:4]), processing_class=tok).train()
        return model.state_dict()

    big, acc, start = weights("big", 4, 1), weights("acc", 2, 2), tiny_llama(_tok(), seed=1).state_dict()
    assert not torch.allclose(big["model.norm.weight"], start["model.norm.weight"])
    for k in big:
        torch.testing.assert_close(big[k], acc[k], atol=2e-5, rtol=1e-4, msg=k)


@pytest.mark.parametrize("variant", ["two_view", "curvature"])
def test_jepa_and_stp_terms_equal_inspect(tmp_path, variant):
    """The same rows through TRL and through llm-jepa's own inspect: the same JEPA distance and STP loss
    (spans forced: two_view's span is the answer, curvature uses every step)."""
    from llm_jepa.inspection import inspect_examples

    ckpt = write_checkpoint(tmp_path / "ckpt")
    rows = MULTI  # four single-turn rows and a two-turn one (views from its last pair, STP over four turns)
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    opts = {"jepa_lambda": 1.0, "stp_lambda": 0.1, "stp_variant": variant, "predictors": 2}
    cli = load_config(None, ["--model", str(ckpt), "--data", str(tmp_path / "d.jsonl"), "--output_dir",
                             str(tmp_path / "cli"), *[f"--{k}={v}" for k, v in opts.items()]])
    report = inspect_examples(cli, num_examples=len(rows))
    args = _args(JepaSFTConfig, tmp_path / "trl", rows, **opts)
    trainer = JepaSFTTrainer(model=str(ckpt), args=args, train_dataset=Dataset.from_list(rows))
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader(trainer.train_dataset))))
    from llm_jepa.objective import compute_objective

    trainer.model.eval()
    with torch.no_grad():
        out = compute_objective(trainer.model, batch, trainer.objective)
    assert abs(out.jepa_loss.item() - report["jepa_loss"]) < 1e-5
    assert abs(out.terms["stp_loss"].item() - report["terms"]["stp_loss"]) < 1e-5
    assert out.terms["stp_loss"].item() > 0


def test_stp_spans_stay_inside_their_packed_document(tmp_path):
    _, _, trainer, batch = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path, MULTI * 3, jepa_lambda=0.0, stp_lambda=0.1,
                                 packing=True, max_length=128, stp_times=4)
    idx = batch["stp_index"]  # [S, 4M, 2] (row, column)
    seg = batch["segment_ids"][idx[..., 0], idx[..., 1]]  # [S, 4M]
    assert idx.shape[0] == 4 * len(MULTI) * 3 and batch["input_ids"].shape[0] == 1  # all documents in one row
    assert (seg == seg[:, :1]).all()  # every point of a span in one document
    assert len(set(seg[:, 0].tolist())) > 1


def test_turn_of_tokens_marks_each_turns_content():
    tok = _tok()
    row = MULTI[4]
    ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
    turn = turn_of_tokens(tok, row, ids)
    texts = [tok.decode([t for t, o in zip(ids, turn, strict=True) if o == k]) for k in range(4)]
    assert texts == ["a", "b", "the dog again", "(dog){2}"]
    assert turn_of_tokens(tok, row, ids[3:]) == turn[3:]  # truncated at the start (keep_end)


def test_config_options_are_the_clis(tmp_path):
    names = {f.name for f in objective_fields()}
    assert {"jepa_lambda", "predictors", "distance", "stp_lambda", "stp_variant", "view_pair", "loss_dropout"} <= names
    cli = {f.name: f for f in dataclasses.fields(config_class())}  # the CLI's class, with the terms' options
    ours = {f.name: f for f in dataclasses.fields(JepaSFTConfig)}
    for name in names:
        assert ours[name].default == cli[name].default and ours[name].metadata["help"] == cli[name].metadata["help"]
    for bad, needle in [({"distance": "nope"}, "distance must be one of"), ({"temperature": 0.0}, "temperature must be"),
                        ({"predictors": 11}, "predictors"), ({"stp_variant": "x"}, "stp_variant"),
                        ({"jepa_lambda": 0.0, "gamma": 0.0}, "objective is empty")]:
        with pytest.raises(ConfigError, match=needle):
            JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


@pytest.mark.parametrize("kw,needle", [
    ({"loss_type": "dft"}, "loss_type='dft'"),
    ({"packing": True, "packing_strategy": "wrapped", "stp_lambda": 0.1, "max_length": 32}, "packing_strategy"),
    ({"packing": True, "packing_strategy": "bfd_split", "max_length": 32}, "bfd_split"),
])
def test_options_it_cannot_honour_are_refused_by_name(tmp_path, kw, needle):
    with pytest.raises(ValueError, match=needle):
        _step(JepaSFTTrainer, JepaSFTConfig, tmp_path, MULTI, **kw)


def test_formatting_func_and_jepa_on_text_are_refused(tmp_path):
    with pytest.raises(ValueError, match="formatting_func"):
        JepaSFTTrainer(model=tiny_llama(_tok()), args=_args(JepaSFTConfig, tmp_path, MULTI, stp_lambda=0.1),
                       train_dataset=Dataset.from_list(MULTI), processing_class=_tok(), formatting_func=lambda r: "x")
    with pytest.raises(ValueError, match=r"model_init_kwargs \['device_map'\]"):
        JepaSFTTrainer(model="some/model", args=_args(JepaSFTConfig, tmp_path, MULTI, model_init_kwargs={"device_map": "auto"}),
                       train_dataset=Dataset.from_list(MULTI))
    with pytest.raises(ValueError, match="quantization_config"):
        JepaSFTTrainer(model=tiny_llama(_tok()), args=_args(JepaSFTConfig, tmp_path, MULTI), processing_class=_tok(),
                       train_dataset=Dataset.from_list(MULTI), quantization_config=object())
    with pytest.raises(ValueError, match="train:0: field 'text': a plain text row has no views"):
        _step(JepaSFTTrainer, JepaSFTConfig, tmp_path, TEXT)


def test_stp_on_text_rows_trains(tmp_path):
    loss, grads, _, batch = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path, TEXT, jepa_lambda=0.0, stp_lambda=1.0)
    plain, *_ = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path / "p", TEXT, jepa_lambda=0.0)
    assert batch["stp_spans"].shape[0] == len(TEXT) and loss > plain


def test_saved_run_carries_its_settings(tmp_path):
    from llm_jepa.runs import load_run

    tok = _tok()
    args = _args(JepaSFTConfig, tmp_path / "run", MULTI, predictors=2, view_system="none", stp_lambda=0.1,
                 save_strategy="no")
    trainer = JepaSFTTrainer(model=tiny_llama(tok), args=args, train_dataset=Dataset.from_list(MULTI),
                             processing_class=tok)
    trainer.train()
    trainer.save_model()
    run = load_run(str(tmp_path / "run"))
    assert run.view.predictors == 2 and run.view.view_system == "none" and run.config["stp_lambda"] == 0.1
    from llm_jepa.embed import embed  # as llm-jepa embed / eval / analyze load it: with the saved settings

    saved = embed(str(tmp_path / "run"), ["the dog"], "pred")
    explicit = embed(load_run(str(tmp_path / "run"), predictors=2, view_system="none"), ["the dog"], "pred")
    other = embed(load_run(str(tmp_path / "run"), predictors=1), ["the dog"], "pred")
    assert saved.shape == (1, 32) and (saved == explicit).all() and not (saved == other).all()


def test_peft_config_trains_adapters_and_the_stp_predictor(tmp_path):
    from peft import LoraConfig

    tok = _tok()
    args = _args(JepaSFTConfig, tmp_path / "run", MULTI, stp_lambda=0.1, stp_predictor=True, learning_rate=1e-2,
                 save_strategy="no")
    trainer = JepaSFTTrainer(model=tiny_llama(tok), args=args, train_dataset=Dataset.from_list(MULTI),
                             processing_class=tok, peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    trainable = [n for n in before]
    assert trainable and all("lora_" in n or "stp_predictor" in n for n in trainable)
    assert any("stp_predictor" in n for n in trainable)
    moved = [n for n, p in trainer.model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert any("lora_B" in n for n in moved) and any("stp_predictor" in n for n in moved)
    trainer.save_model()
    assert (tmp_path / "run" / "adapter_config.json").is_file() and (tmp_path / "run" / "llm_jepa_config.yaml").is_file()


def test_docs_name_every_option_and_every_refusal():
    from pathlib import Path

    from llm_jepa.trl import REFUSED

    text = (Path(__file__).resolve().parents[1] / "docs" / "trl.md").read_text()
    for f in objective_fields():
        assert f"`{f.name}`" in text, f.name
    for name, _, _ in REFUSED:
        assert f"`{name}" in text, name


def test_evaluate_never_drops_the_views(tmp_path):
    tok = _tok()
    args = _args(JepaSFTConfig, tmp_path, MULTI, loss_dropout=0.99, per_device_eval_batch_size=len(MULTI))
    trainer = JepaSFTTrainer(model=tiny_llama(tok), args=args, train_dataset=Dataset.from_list(MULTI),
                             eval_dataset=Dataset.from_list(MULTI), processing_class=tok)
    metrics = trainer.evaluate()
    assert metrics["eval_jepa_loss"] > 0 and metrics["eval_loss"] > metrics["eval_lm_loss"]
    train_batch = next(iter(trainer.get_train_dataloader()))
    assert train_batch["views_skipped"]  # the training collator drops them (seeded: 0.99)


@pytest.mark.parametrize("rows", [MULTI, PROMPT_COMPLETION, PROMPT_COMPLETION_CHAT, TEXT],
                         ids=["multi-turn", "prompt-completion", "prompt-completion chat", "text"])
def test_stp_finds_every_turns_content_in_every_format(tmp_path, rows):
    _, _, trainer, batch = _step(JepaSFTTrainer, JepaSFTConfig, tmp_path, rows, jepa_lambda=0.0, stp_lambda=1.0)
    assert sorted({i for i, _, _ in batch["stp_spans"].tolist()}) == list(range(len(rows)))
    tok = trainer.processing_class
    for row in rows[:2]:
        text, turns = _turn_texts(tok, row)
        assert turns == _expected_turns(row), text


def _turn_texts(tok, row):
    if "messages" in row or isinstance(row.get("prompt"), list):
        messages = row.get("messages") or row["prompt"] + row["completion"]
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
    else:
        text = row.get("text") or row["prompt"] + row["completion"] + tok.eos_token
        row = {**row, "completion": row["completion"] + tok.eos_token} if "prompt" in row else {"text": text}
        ids = tok(text)["input_ids"]
    turn = turn_of_tokens(tok, row, ids)
    return tok.decode(ids), [tok.decode([t for t, o in zip(ids, turn, strict=True) if o == k])
                             for k in range(max(turn) + 1)]


def _expected_turns(row):
    if "messages" in row or isinstance(row.get("prompt"), list):
        messages = row.get("messages") or row["prompt"] + row["completion"]
        return [m["content"] for m in messages if m["role"] != "system"]
    return [row["prompt"], row["completion"]] if "prompt" in row else [row["text"]]


def test_the_config_parses_from_the_command_line_like_any_sft_config(tmp_path):
    import pickle

    from transformers import HfArgumentParser

    parser = HfArgumentParser((JepaSFTConfig,))
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--stp_lambda", "0.02",
                                                  "--distance", "infonce", "--predictors", "3"])
    assert (args.stp_lambda, args.distance, args.predictors) == (0.02, "infonce", 3)
    assert pickle.loads(pickle.dumps(args)).stp_lambda == 0.02  # the Trainer saves it as training_args.bin
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--output_dir", str(tmp_path), "--distance", "nope"])


# ---- the red team's findings: a term registered after import, the CLI's checks, the example --------
@pytest.fixture
def toy_term():
    from llm_jepa.objective import TERMS
    from tests import _toy_term

    _toy_term.register()
    yield _toy_term
    del TERMS["toy"]  # the registry is shared by every module


def test_a_term_registered_after_import_reaches_the_config(tmp_path, toy_term):
    import pickle

    JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True)  # the class of the first use: the toy term is off
    from llm_jepa.trl import jepa_sft_config_class

    cls = jepa_sft_config_class()
    args = cls(output_dir=str(tmp_path), use_cpu=True, toy_weight=0.5, toy_scale=2.0)
    assert args.term_settings()["toy"].toy_scale == 2.0 and args.objective_config().terms["toy"] == 0.5
    assert pickle.loads(pickle.dumps(args)).toy_scale == 2.0
    with pytest.raises(ConfigError, match="toy_scale must be > 0"):  # checked while the term is off, as the CLI
        cls(output_dir=str(tmp_path), use_cpu=True, toy_scale=0.0)
    with pytest.raises(ConfigError, match="toy_weight needs dataloader_num_workers=0"):  # a collate hook
        cls(output_dir=str(tmp_path), use_cpu=True, toy_weight=1.0, dataloader_num_workers=2)


def test_a_term_registered_after_import_trains_through_its_hooks(tmp_path, toy_term):
    from llm_jepa.trl import jepa_sft_config_class

    _, grads, trainer, batch = _step(JepaSFTTrainer, jepa_sft_config_class(), tmp_path, MULTI, jepa_lambda=0.0,
                                     toy_weight=1.0)
    assert batch["toy_lengths"].shape[0] == len(MULTI)  # its collate hook
    assert grads["toy_probe.weight"].abs().sum() > 0  # its setup hook's module, reached by its loss


def test_the_first_use_of_the_name_has_the_terms_registered_by_then(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    code = ("import llm_jepa.trl\nfrom tests import _toy_term\n_toy_term.register()\n"
            "from llm_jepa.trl import JepaSFTConfig\n"
            f"a = JepaSFTConfig(output_dir={str(tmp_path)!r}, use_cpu=True, toy_weight=1.0)\n"
            "print(sorted(a.objective_config().terms))")
    root = Path(__file__).resolve().parents[1]  # for ``tests._toy_term``
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "['toy']"


@pytest.mark.parametrize("bad,needle", [
    ({"jepa_lambda": float("inf")}, "jepa_lambda must be"), ({"gamma": float("inf")}, "gamma must be"),
    ({"stp_times": 0}, "stp_times must be"), ({"stp_max_span": -1}, "stp_max_span must be"),
    ({"gamma": float("nan")}, "gamma must be"),
])
def test_the_checks_are_the_clis_also_for_options_of_a_term_that_is_off(tmp_path, bad, needle):
    with pytest.raises(ConfigError, match=needle):  # the CLI's class refuses it too
        config_class()(output_dir=str(tmp_path), use_cpu=True, **bad)
    with pytest.raises(ConfigError, match=needle):
        JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


@pytest.mark.parametrize("bad,needle", [({"view_pair": "bogus"}, "view_pair must be int, got 'bogus'"),
                                        ({"predictors": 1.5}, "predictors must be int"),
                                        ({"stp_lambda": "0.1"}, "stp_lambda must be float")])
def test_an_option_of_the_wrong_type_is_refused_by_name(tmp_path, bad, needle):
    with pytest.raises(ConfigError, match=needle):
        JepaSFTConfig(output_dir=str(tmp_path), use_cpu=True, **bad)


@pytest.mark.parametrize("rows", [PROMPT_COMPLETION, TEXT, MULTI], ids=["prompt-completion", "text", "messages"])
def test_the_example_script_runs_on_every_format_it_names(tmp_path, rows):
    import subprocess
    import sys
    from pathlib import Path

    write_checkpoint(tmp_path / "ckpt")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({**row, "task": "regex"}) + "\n" for row in rows))  # plus a column TRL lacks
    script = Path(__file__).resolve().parents[1] / "examples" / "trl_sft_stp.py"
    out = subprocess.run([sys.executable, str(script), "--model", str(tmp_path / "ckpt"), "--data", str(data),
                          "--out", str(tmp_path / "out"), "--steps", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "out" / "llm_jepa_config.yaml").exists()
