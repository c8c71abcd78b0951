"""The straightness diagnostic on paths whose geometry is known, in ``analyze`` and in the demo's stp arm."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from llm_jepa.analysis.straightness import trajectory_straightness
from llm_jepa.data import example_from_row
from tests._factory import conv, make_tokenizer

EXAMPLES = [example_from_row({"messages": conv(u, a)}, ("d", i)) for i, (u, a) in enumerate([
    ("lines with the string 'dog'", "(.*dog.*)"), ("what is 1,000 plus 42?", "1042"),
    ("lines ending with a vowel", "(.*[AEIOUaeiou])")])]


class PathModel(torch.nn.Module):
    """Hidden state of a token = a point of a known curve at the token's position in its segment."""

    def __init__(self, curve):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.curve = curve

    def forward(self, input_ids, position_ids, **kwargs):
        return SimpleNamespace(hidden_states=(self.curve(position_ids.float()),), logits=None)


def test_a_straight_path_scores_one():
    v = torch.tensor([1.0, -2.0, 0.5])
    model = PathModel(lambda p: p[..., None] * v)  # every step is v
    out = trajectory_straightness(model, make_tokenizer("chatml"), EXAMPLES, times=8)
    assert out["rest_patch_cosine"] == pytest.approx(1.0, abs=1e-5) and out["spans"] == 24
    assert out["step_cosine"] == pytest.approx(1.0, abs=1e-5)


def test_a_circle_turns_by_its_step_angle():
    model = PathModel(lambda p: torch.stack([torch.cos(p), torch.sin(p)], dim=-1))  # 1 radian per token
    out = trajectory_straightness(model, make_tokenizer("chatml"), EXAMPLES)
    assert out["step_cosine"] == pytest.approx(math.cos(1.0), abs=1e-4)
    assert out["rest_patch_cosine"] < 0.9


@pytest.mark.slow
def test_demo_stp_arm_trains_reports_and_measures_straightness(tmp_path):
    from llm_jepa.demo.run import DemoConfig, run_demo

    cfg = DemoConfig(output=str(tmp_path / "out"), steps=4, batch_size=8, n_train=64, n_test=4, size="micro",
                     n_analysis=4, max_new_tokens=4, arms=["baseline", "stp"])
    results = run_demo(cfg)
    stp = results["arms"]["stp"]
    assert any("stp_loss" in r for r in stp["log"]) and not any("stp_loss" in r for r in results["arms"]["baseline"]["log"])
    for arm in results["arms"].values():
        assert -1 <= arm["diagnostics"]["straightness"]["rest_patch_cosine"] <= 1
    report = (Path(cfg.output) / "report.md").read_text()
    assert "cos(rest, patch)" in report and "STP vs baseline exact match" in report


def test_analyze_reports_straightness_for_each_model(tmp_path):
    from llm_jepa.analysis.run import analyze, format_table
    from tests._factory import write_run_inputs

    write_run_inputs(tmp_path, [m.messages for m in EXAMPLES] * 2)
    result = analyze([str(tmp_path / "ckpt")], tmp_path / "train.jsonl", output=tmp_path / "a", limit=6, top=4)
    (model,) = result["models"].values()
    assert model["straightness"]["spans"] == 6 * 4 and -1 <= model["straightness"]["rest_patch_cosine"] <= 1
    assert "straightness cos(rest, patch)" in format_table(result)


def test_a_plain_text_run_is_measured_with_its_own_separator():
    """The diagnostic once rendered every plain-text conversation with the default newline, whatever
    separator the run was trained with."""
    seen = []
    model = PathModel(lambda p: p[..., None] * torch.ones(3))
    forward = model.forward

    def recording(input_ids, position_ids, **kwargs):
        seen.append(input_ids)
        return forward(input_ids, position_ids, **kwargs)

    model.forward = recording
    tok = make_tokenizer("chatml")
    trajectory_straightness(model, tok, EXAMPLES, plain_text=True, separator=" ANSWER: ")
    text = "".join(tok.decode(ids.flatten()) for ids in seen)
    assert text.count(" ANSWER: ") >= len(EXAMPLES)


def test_analyze_hands_the_runs_separator_to_the_diagnostic(tmp_path):
    from llm_jepa.analysis.run import analyze
    from llm_jepa.analysis.straightness import trajectory_straightness as real
    from tests._factory import write_run_inputs

    write_run_inputs(tmp_path, [m.messages for m in EXAMPLES] * 2)
    seen = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    analyze([str(tmp_path / "ckpt")], tmp_path / "train.jsonl", output=tmp_path / "a", limit=4, top=2,
            settings={"plain_text": True, "separator": " => "}, straightness=spy)
    assert seen["plain_text"] is True and seen["separator"] == " => "
