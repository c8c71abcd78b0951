"""Each option's roles are declared once, on its field, and every list is derived from them (issue 25
section 1); the defects the hand-copied lists caused (view_system dropped from a run's settings,
--resume accepting a changed --limit, --dtype, batch, optimiser or training file) stay fixed."""

import json
from dataclasses import fields

import pytest

from llm_jepa import config as config_mod
from llm_jepa.config import FIXED, RUN, VIEW_ONLY, JepaConfig, load_config, options_with
from llm_jepa.data import load_examples
from llm_jepa.objective import ObjectiveConfig
from llm_jepa.runs import SETTINGS, in_memory_run, load_run
from llm_jepa.train import resume_fixed, train
from llm_jepa.views import VIEW_CHOICES, ViewConfig
from tests._factory import conv, write_rows
from tests.test_train import ROWS, _cfg, ckpt, data  # noqa: F401 (fixtures)

_DERIVED = {"chat_template", "build_views"}  # ViewConfig fields the training config derives


# ---- the declarations ---------------------------------------------------------------------------
def test_every_view_field_is_a_training_option_with_its_default_choices_and_run_role():
    options = JepaConfig.__dataclass_fields__
    for f in fields(ViewConfig):
        if f.name in _DERIVED:
            continue
        assert f.name in options, f"ViewConfig.{f.name} has no training option"
        assert options[f.name].default == f.default, f.name
        if f.name in VIEW_CHOICES:
            assert list(options[f.name].metadata["choices"]) == list(VIEW_CHOICES[f.name]), f.name
        assert {RUN, FIXED} <= config_mod.option_roles(f.name), f.name


def test_objective_fields_are_options_with_the_objective_defaults():
    options = JepaConfig.__dataclass_fields__
    for f in fields(ObjectiveConfig):
        if f.name in options and f.name != "isolation":  # 'auto' resolves to the objective's default
            assert options[f.name].default == f.default, f.name
            assert FIXED in config_mod.option_roles(f.name), f.name


def test_the_lists_are_derived_from_the_roles():
    assert set(SETTINGS) == set(options_with(RUN))
    assert config_mod.LOCAL_PATHS == options_with(config_mod.PATH)
    assert set(options_with(FIXED)) <= set(resume_fixed())
    ranged = {name for name, *_ in config_mod._ranges()}
    assert {"temperature", "learning_rate", "per_device_train_batch_size", "max_train_examples"} <= ranged
    with pytest.raises(ValueError, match="unknown option role"):
        options_with("fixd")


def test_a_view_only_option_is_what_regular_reports_as_unused():
    cfg = load_config(None, ["--output_dir", "x", "--regular", "true", "--distance", "infonce", "--view_system", "none"])
    assert config_mod.regular_ignores(cfg) == ["distance"]  # view_system is not view-only: it shapes eval too
    assert "distance" in options_with(VIEW_ONLY) and "view_system" not in options_with(VIEW_ONLY)


def test_settings_hold_every_run_setting_under_its_training_name():
    cfg = load_config(None, ["--output_dir", "x", "--view_system", "empty", "--k", "2", "--dtype", "float32"])
    from tests._factory import make_tokenizer

    run = in_memory_run(None, make_tokenizer("chatml"), cfg)
    assert set(run.settings()) == set(SETTINGS)
    assert run.settings()["view_system"] == "empty" and run.settings()["dtype"] == "float32"


# ---- view_system reaches every consumer of a run ------------------------------------------------
@pytest.fixture(scope="module")
def lean_run(tmp_path_factory, ckpt, data):  # noqa: F811
    out = tmp_path_factory.mktemp("lean") / "run"
    train(_cfg(ckpt, data, out, "--max_steps", "1", "--view_system", "none", "--save_steps", "100"))
    return out


def test_a_run_trained_with_view_system_none_is_evaluated_with_none(lean_run, data, monkeypatch):  # noqa: F811
    # today's main: TrainedRun.settings() dropped view_system, so with_overrides() (what evaluate
    # does with a TrainedRun, and the accuracy callback with its in-memory run) reset it to 'default'
    import llm_jepa.eval.runner as runner
    from llm_jepa.eval.runner import evaluate

    run = load_run(lean_run, weights=False)
    assert run.view.view_system == "none"
    assert run.with_overrides().view.view_system == "none"
    seen = []
    real = runner._similarities
    monkeypatch.setattr(runner, "_similarities", lambda r, *a: seen.append(r.view.view_system) or real(r, *a))
    summary = evaluate(load_run(lean_run), load_examples(data, 2), quiet=True, max_new_tokens=2, task="regex")
    assert summary["settings"]["run"]["view_system"] == "none"
    assert seen == ["none"]


def test_the_accuracy_callback_measures_similarity_on_the_trained_views(lean_run, data, monkeypatch):  # noqa: F811
    import llm_jepa.eval.runner as runner
    from llm_jepa.eval.callback import AccuracyCallback

    seen = []
    real = runner._similarities
    monkeypatch.setattr(runner, "_similarities", lambda r, *a: seen.append(r.view.view_system) or real(r, *a))
    run = load_run(lean_run)
    cb = AccuracyCallback(load_examples(data, 2), run.tokenizer, similarity=True, task="regex", max_new_tokens=2)
    cb._score(run.model, load_config(None, ["--output_dir", "x", "--view_system", "none"]))
    assert seen == ["none"]


def test_a_resumed_eval_with_another_view_system_is_refused(lean_run, data, tmp_path):  # noqa: F811
    # today's main: accepted, and the file then mixed similarities of two view renderings
    from llm_jepa.eval.runner import evaluate

    out = tmp_path / "eval"
    evaluate(lean_run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex")
    with pytest.raises(FileExistsError, match=r"different run_settings\.view_system .none. -> .empty."):
        evaluate(lean_run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex", settings={"view_system": "empty"})
    evaluate(lean_run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex", settings={"view_system": "none"})


def test_an_eval_recorded_before_view_system_was_recorded_still_resumes(lean_run, data, tmp_path):  # noqa: F811
    from llm_jepa.eval.runner import evaluate

    out = tmp_path / "eval"
    evaluate(lean_run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex")
    record = json.loads((out / "eval_run.json").read_text())
    del record["run_settings"]["view_system"]
    (out / "eval_run.json").write_text(json.dumps(record))
    assert evaluate(lean_run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex")["n"] == 2


# ---- options fixed on resume (issue 27) ---------------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory, ckpt):  # noqa: F811
    """A 2-step run with a checkpoint at step 2, on its own copy of the data."""
    root = tmp_path_factory.mktemp("resume")
    rows = write_rows(root / "train.jsonl", ROWS)
    out = root / "run"
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2"))
    return out, rows


@pytest.mark.parametrize("flags,needle", [
    (["--limit", "8"], "max_train_examples None -> 8"),
    (["--dtype", "float32"], "dtype 'auto' -> 'float32'"),
    (["--per_device_train_batch_size", "2"], "global batch 4 -> 2"),
    (["--adam_beta1", "0.5"], "adam_beta1 0.9 -> 0.5"),
    (["--weight_decay", "0.1"], "weight_decay 0.0 -> 0.1"),
])
def test_resume_refuses_a_changed_limit_dtype_batch_or_optimiser(finished, ckpt, flags, needle):  # noqa: F811
    # today's main resumed each of these silently (and --optim sgd failed with a KeyError traceback
    # after the config had been rewritten)
    out, rows = finished
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match=rf"changed options \(.*{needle}"):
        train(_cfg(ckpt, rows, out, "--max_steps", "4", "--save_steps", "2", "--resume", "true", *flags))
    assert sorted(p.name for p in out.iterdir()) == before  # refused before anything was touched


def test_resume_refuses_a_training_file_replaced_by_other_rows(tmp_path, ckpt):  # noqa: F811
    rows = write_rows(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "run"
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2"))
    assert json.loads((out / "llm_jepa_run.json").read_text())["num_rows"] == len(ROWS)
    write_rows(rows, [conv(f"lines with '{w}'", f"(.*{w}.*)") for w in ("cow", "hen", "ant", "bee")] * 4)
    with pytest.raises(ValueError, match=r"training rows \(content hash\)"):
        train(_cfg(ckpt, rows, out, "--max_steps", "4", "--save_steps", "2", "--resume", "true"))


def test_resume_accepts_the_same_global_batch_split_differently(tmp_path, ckpt):  # noqa: F811
    rows = write_rows(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "run"
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2"))
    train(_cfg(ckpt, rows, out, "--max_steps", "3", "--save_steps", "2", "--resume", "true",
               "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2"))
    assert json.loads((out / "train_results.json").read_text())
    assert json.loads((out / "llm_jepa_run.json").read_text())["global_train_batch"] == 4


def test_a_fresh_checkpoint_without_a_run_record_still_resumes(finished, ckpt, tmp_path):  # noqa: F811
    """Runs saved before llm_jepa_run.json existed: the data and batch are unknown, not changed."""
    import shutil

    out, rows = finished
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    (copy / "llm_jepa_run.json").unlink()
    (copy / ".llm-jepa.lock").unlink(missing_ok=True)
    train(_cfg(ckpt, rows, copy, "--max_steps", "3", "--save_steps", "2", "--resume", "true",
               "--per_device_train_batch_size", "2"))



@pytest.mark.parametrize("parser", ["transformers", "trl"])
def test_the_roles_stay_out_of_argparse_so_any_dataclass_parser_reads_the_config(parser):
    """The roles and checks ride on the fields' metadata, which HfArgumentParser and TRL's parser hand
    to argparse whole: a config built with llm-jepa's options parses with either."""
    if parser == "trl":
        from trl import TrlParser as Parser
    else:
        from transformers import HfArgumentParser as Parser
    (cfg,) = Parser((config_mod.config_class(),)).parse_args_into_dataclasses(
        ["--output_dir", "x", "--view_system", "none", "--stp_lambda", "0.1"])
    assert cfg.view_system == "none" and list(cfg.term_settings()) == ["stp_loss"]
    assert config_mod.option_roles("view_system") == {RUN, FIXED}


def test_resume_with_another_optimizer_is_refused_even_when_changes_are_allowed(finished, ckpt):  # noqa: F811
    # today's main: --optim sgd --resume_allow_changes renamed the config, cut the metrics and then
    # failed with a KeyError traceback loading the AdamW state into SGD
    out, rows = finished
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match="another optimizer \\(optim 'adamw_torch(_fused)?' -> 'sgd'\\)"):
        train(_cfg(ckpt, rows, out, "--max_steps", "4", "--save_steps", "2", "--resume", "true", "--optim", "sgd",
                   "--resume_allow_changes", "true"))
    assert sorted(p.name for p in out.iterdir()) == before
