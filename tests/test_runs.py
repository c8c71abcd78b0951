"""A trained run's settings reach everything that uses it: eval (prompts, similarity), analyze, the
demo, the sweep and the accuracy callback all read them through ``llm_jepa.runs.load_run``."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from llm_jepa.config import load_config
from llm_jepa.data import load_examples
from llm_jepa.runs import RUN_CONFIG, in_memory_run, load_run
from llm_jepa.train import train
from tests._factory import conv, make_tokenizer, write_checkpoint

REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring", "lake") for n in range(1, 3)]
#: every view setting away from its default: what eval and analyze must pick up from the saved run
TRAINED = {"plain_text": True, "separator": " => ", "predictors": 3, "predictor_position": "prepend",
           "direction": "code_to_text"}


def _args(ckpt, data, out, settings, *extra):
    flags = [a for k, v in settings.items() for a in (f"--{k}", str(v))]
    return load_config(None, ["--model", str(ckpt), "--data", str(data), "--output_dir", str(out), "--max_steps", "2",
                              "--per_device_train_batch_size", "4", "--save_steps", "100", "--disable_tqdm", "true",
                              "--logging_steps", "1", "--seed", "3", *flags, *extra])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    p = tmp_path_factory.mktemp("data") / "train.jsonl"
    p.write_text("".join(json.dumps({"messages": r}) + "\n" for r in ROWS))
    return p


@pytest.fixture(scope="module")
def plain_ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("plain_ckpt"), "plain")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, plain_ckpt, data):
    """A tiny plain-text run trained with TRAINED's settings."""
    out = tmp_path_factory.mktemp("runs") / "plain"
    train(_args(plain_ckpt, data, out, TRAINED))
    return out


def test_load_run_reads_the_saved_settings(trained):
    run = load_run(trained)
    v = run.view
    assert (run.plain_text, v.separator, v.predictors, v.predictor_position, v.direction) == (
        True, " => ", 3, "prepend", "code_to_text")
    assert v.predictor_order == "paper"  # recorded by the run, so the run reads back as it trained
    assert yaml.safe_load((trained / RUN_CONFIG).read_text())["predictor_order"] == "paper"
    over = load_run(trained, weights=False, separator=" :: ", predictors=1, direction=None)
    assert (over.view.separator, over.view.predictors, over.view.direction) == (" :: ", 1, "code_to_text")
    assert over.model is None


def test_eval_renders_the_trained_separator_and_builds_the_trained_views(trained, data, monkeypatch):
    import llm_jepa.eval.runner as runner

    prompts = []
    real = runner.generate
    monkeypatch.setattr(runner, "generate", lambda m, t, p, *a, **k: prompts.extend(p) or real(m, t, p, *a, **k))
    examples = load_examples(data, 3)
    s = runner.evaluate(str(trained), examples, generation=runner.GenerationSettings(max_new_tokens=2), quiet=True)
    assert prompts == [ex.user + " => " for ex in examples]
    assert s["settings"]["run"]["separator"] == " => " and s["settings"]["run"]["predictors"] == 3
    # the similarity by hand, from lone forwards: code_to_text, so the source is the Code view with
    # <|predictor_1|><|predictor_2|><|predictor_3|> in front (plain text: no template), the target is the Text
    run = load_run(trained)
    tok, model = run.tokenizer, run.model

    def last_hidden(text):
        ids = torch.tensor([tok(text)["input_ids"]])
        return model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]

    with torch.no_grad():
        want = [F.cosine_similarity(last_hidden("<|predictor_1|><|predictor_2|><|predictor_3|>" + ex.assistant),
                                    last_hidden(ex.user), dim=0).item() for ex in examples]
    assert s["similarity"]["all"] == pytest.approx(sum(want) / 3, abs=1e-5)
    # an explicit flag wins over the saved setting
    prompts.clear()
    runner.evaluate(str(trained), examples[:1], generation=runner.GenerationSettings(max_new_tokens=1), quiet=True,
                    settings={"separator": "\n"}, similarity=False)
    assert prompts == [examples[0].user + "\n"]


def test_eval_cli_flags_override_the_run(trained, data, tmp_path, monkeypatch):
    import llm_jepa.eval.runner as runner
    from llm_jepa.cli import main

    prompts = []
    real = runner.generate
    monkeypatch.setattr(runner, "generate", lambda m, t, p, *a, **k: prompts.extend(p) or real(m, t, p, *a, **k))
    assert main(["eval", "--model", str(trained), "--data", str(data), "--output", str(tmp_path / "e"), "--limit", "2",
                 "--max-new-tokens", "1", "--separator", " :: ", "--predictors", "2", "--direction", "text_to_code"]) == 0
    assert prompts == [ex.user + " :: " for ex in load_examples(data, 2)]
    saved = json.loads((tmp_path / "e" / "eval_run.json").read_text())["run_settings"]
    assert (saved["separator"], saved["predictors"], saved["direction"], saved["predictor_position"]) == (
        " :: ", 2, "text_to_code", "prepend")


def test_metric_options_do_not_take_run_settings(trained, data):
    from llm_jepa.eval.runner import evaluate

    with pytest.raises(ValueError, match="predictors: a setting of the model's run"):
        evaluate(str(trained), data, predictors=1, quiet=True)


def test_analyze_uses_each_run_settings(trained, data, tmp_path):
    from llm_jepa.analysis.run import analyze

    result = analyze([trained], data, output=tmp_path / "a", limit=8, batch_size=4)
    m = result["models"]["plain"]
    assert (m["predictors"], m["direction"]) == (3, "code_to_text")
    assert m["settings"]["separator"] == " => " and m["settings"]["predictor_position"] == "prepend"
    assert not m["settings"]["chat_template"]


def test_demo_diagnostics_use_the_trained_k(trained, data):
    from llm_jepa.demo.run import DemoConfig, _diagnose

    d = _diagnose(DemoConfig(n_analysis=4), trained, data)
    assert d["predictors"] == 3


def test_sweep_evaluates_at_the_trained_k(plain_ckpt, data, tmp_path):
    from llm_jepa.sweep.grid import Run
    from llm_jepa.sweep.runner import train_and_evaluate

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"model_name_or_path": str(plain_ckpt), "train_file": str(data), "max_steps": 1,
                                    "per_device_train_batch_size": 4, "save_steps": 100, "disable_tqdm": True,
                                    "plain_text": True, "separator": " => "}))
    run = Run(run_id="k3", cell_id="k3", cell={"k": 3}, seed=1, baseline=False,
              overrides={"predictors": 3, "seed": 1}, base=str(base), eval_data=str(data),
              eval_options={"limit": 2, "max_new_tokens": 1})
    summary = train_and_evaluate(run, tmp_path / "run")
    assert summary["settings"]["run"]["predictors"] == 3 and summary["settings"]["run"]["separator"] == " => "


def test_accuracy_callback_evaluates_with_the_training_settings(trained, data, tmp_path, monkeypatch):
    import llm_jepa.eval.runner as runner
    from llm_jepa.eval.callback import AccuracyCallback

    prompts = []
    real = runner.generate
    monkeypatch.setattr(runner, "generate", lambda m, t, p, *a, **k: prompts.extend(p) or real(m, t, p, *a, **k))
    run = load_run(trained)
    cb = AccuracyCallback(load_examples(data, 2), run.tokenizer, task="regex", max_new_tokens=1)
    cb._score(run.model, _args("unused", data, tmp_path / "x", TRAINED))
    assert prompts == [ex.user + " => " for ex in load_examples(data, 2)]


def test_a_model_without_a_run_config_gets_the_defaults(plain_ckpt, tmp_path):
    run = load_run(plain_ckpt, weights=False)
    assert run.config == {} and run.view.predictors == 0
    assert run.plain_text  # its tokenizer has no chat template
    assert not load_run(write_checkpoint(tmp_path / "chat"), weights=False).plain_text
    pair = in_memory_run(None, make_tokenizer("chatml"))
    assert pair.view.predictors == 0 and not pair.plain_text


def test_runs_saved_before_the_predictor_order_read_as_ascending(trained, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(trained, old)
    cfg = yaml.safe_load((old / RUN_CONFIG).read_text())
    del cfg["predictor_order"]
    (old / RUN_CONFIG).write_text(yaml.safe_dump(cfg))
    assert load_run(old, weights=False).view.predictor_order == "ascending"
    cfg.update(regular=True)  # a baseline never trained its predictors
    (old / RUN_CONFIG).write_text(yaml.safe_dump(cfg))
    assert load_run(old, weights=False).view.predictors == 0


def test_bad_saved_settings_name_file_line_and_field(trained, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    path = bad / RUN_CONFIG
    lines = path.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("predictor_position:"))
    lines[i] = "predictor_position: middle"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{RUN_CONFIG}:{i + 1}: field 'predictor_position'.*middle"):
        load_run(bad, weights=False)
    lines[i] = "predictor_position: prepend"
    j = next(n for n, line in enumerate(lines) if line.startswith("predictors:"))
    lines[j] = "predictors: three"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{RUN_CONFIG}:{j + 1}: field 'predictors': expected int"):
        load_run(bad, weights=False)
    with pytest.raises(ValueError, match="unknown run setting"):
        load_run(trained, weights=False, seperator=" => ")
    with pytest.raises(ValueError, match="override --dtype"):
        load_run(trained, weights=False, dtype="float8")


def test_dtype_from_the_run_or_a_flag_including_float16(trained):
    assert next(load_run(trained, dtype="float16").model.parameters()).dtype == torch.float16
    assert next(load_run(trained).model.parameters()).dtype == torch.float32


def test_lora_adapter_run_loads_through_the_one_loader(data, tmp_path):
    from peft import AutoPeftModelForCausalLM

    from tests._factory import write_run_inputs

    write_run_inputs(tmp_path, ROWS)
    out = tmp_path / "lora"
    train(_args(tmp_path / "ckpt", tmp_path / "train.jsonl", out, {"predictors": 2}, "--lora", "true", "--lora_r", "4",
                "--learning_rate", "1e-2"))
    run = load_run(out, device="cpu")
    assert run.view.predictors == 2 and not run.plain_text
    ref = AutoPeftModelForCausalLM.from_pretrained(str(out)).merge_and_unload().eval()
    ids = torch.tensor([run.tokenizer("lines with dog<|predictor_2|><|predictor_1|>")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(run.model(input_ids=ids).logits, ref(input_ids=ids).logits)


def test_a_lora_adapter_run_is_accepted_as_the_model_of_a_new_training(data, tmp_path):
    # red team: the pre-flight model check demanded config.json, which an adapter run does not
    # have, so `train --model ADAPTER_RUN` failed although load_model loads it
    from tests._factory import write_run_inputs

    write_run_inputs(tmp_path, ROWS)
    first, second = tmp_path / "lora", tmp_path / "continued"
    train(_args(tmp_path / "ckpt", tmp_path / "train.jsonl", first, {}, "--lora", "true", "--lora_r", "4"))
    assert not (first / "config.json").exists() and (first / "adapter_config.json").is_file()
    train(_args(first, tmp_path / "train.jsonl", second, {}))
    assert (second / "model.safetensors").is_file()
