"""The recipes of docs/extending.md, followed once each: a new entry in one table is all it takes."""

import json

import pytest
import torch

from llm_jepa import losses, objective
from llm_jepa.collator import PackingCollator
from llm_jepa.config import JepaConfig, is_baseline, load_config
from llm_jepa.data import example_from_row
from llm_jepa.objective import TERMS, ObjectiveConfig, compute_objective
from llm_jepa.regularizers import REGULARIZERS
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
    assert set(REGULARIZERS) <= set(TERMS)
    options = {f for f in JepaConfig.__dataclass_fields__}
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
