"""The collapse warning is relative to the base model's diagnostics, measured before training."""

import itertools

import pytest
import torch

from llm_jepa.collapse_monitor import collapse_warning, measure_base
from llm_jepa.data import example_from_row
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

SMOLLM2 = {"mean_cosine": 0.93, "std_ratio": 0.2}  # a pretrained model's anisotropic targets


def test_a_pretrained_models_anisotropy_is_not_collapse():
    # SmolLM2 at step 20 of a fine-tune: 0.991, above the former absolute threshold of 0.99
    assert collapse_warning(0.991, SMOLLM2, 20) is None


def test_warns_once_the_distance_to_one_shrank_tenfold():
    message = collapse_warning(0.9965, SMOLLM2, 60)
    assert message and "up from 0.9300 in the base model" in message and "20x" in message


def test_warns_on_an_isotropic_base_well_below_the_absolute_threshold():
    assert collapse_warning(0.96, {"mean_cosine": 0.5, "std_ratio": 0.9}, 5)  # 0.5 -> 0.04 from 1


def test_a_plain_baseline_is_told_what_its_monitor_saw_without_jepa_advice():
    """A baseline trains no JEPA term: advising --sigreg_weight or --lambda would be wrong (issue 30)."""
    jepa = collapse_warning(0.9965, SMOLLM2, 60)
    plain = collapse_warning(0.9965, SMOLLM2, 60, trains_views=False)
    assert "--sigreg_weight" in jepa and "--lambda" in jepa
    assert plain and "monitored" in plain and "--sigreg_weight" not in plain and "--lambda" not in plain


def test_without_a_base_measurement_the_absolute_threshold_applies():
    assert collapse_warning(0.98, None, 5) is None
    assert "not measured" in collapse_warning(0.995, None, 5)


def test_base_measurement_matches_separately_encoded_targets():
    """Oracle: each target view in its own forward pass, then the mean pairwise cosine per batch."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok, seed=1)
    rows = [conv(f"lines with '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "cat", "ring") for n in (1, 2)]
    builder = ViewBuilder(tok, ViewConfig(predictors=1))
    items = [builder(example_from_row({"messages": r})) for r in rows]
    base = measure_base(model, items, tok.pad_token_id, batch_size=3, batches=2)

    def mean_cos(segs):
        with torch.no_grad():
            h = [model(torch.tensor([s.input_ids]), output_hidden_states=True).hidden_states[-1][0, s.anchor]
                 for s in segs]
        return sum(torch.cosine_similarity(a, b, dim=0).item() for a, b in itertools.combinations(h, 2)) / 3

    targets = [it.pairs[0][1] for it in items]
    expected = (mean_cos(targets[:3]) + mean_cos(targets[3:])) / 2
    assert base["mean_cosine"] == pytest.approx(expected, abs=1e-4)


def test_no_views_no_base():
    tok = make_tokenizer("chatml")
    builder = ViewBuilder(tok, ViewConfig(build_views=False))
    items = [builder(example_from_row({"messages": conv()})) for _ in range(4)]
    assert measure_base(tiny_llama(tok), items, tok.pad_token_id, batch_size=2) is None
