"""Lists of training options that follow the term registry: a term registered after ``import
llm_jepa.config`` is in them (they were once computed at import)."""

from dataclasses import dataclass

import pytest
import torch

from llm_jepa import config
from llm_jepa.objective import TERMS, Term, register_term
from llm_jepa.options import FIXED, PATH, RUN, option


@dataclass
class _PathOptions:
    pathy_weight: float = option(0.0, "Weight of the test term (0 = off).", check=(lambda v: v >= 0, ">= 0"))
    pathy_file: str = option("", "A local file the test term reads.", roles=(PATH,))


@pytest.fixture
def path_term():
    register_term("pathy", Term(lambda inputs: torch.zeros(()), "pathy_weight", needs_views=False,
                                options=_PathOptions))
    yield
    del TERMS["pathy"]  # the registry is shared by every module


def test_a_later_terms_path_option_is_a_local_path_and_saved_resolved(path_term, tmp_path, monkeypatch):
    from llm_jepa.config import LOCAL_PATHS  # after the registration, as sweep/demo/train import it

    assert "pathy_file" in LOCAL_PATHS and "pathy_file" in config.local_paths()
    (tmp_path / "f.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    cfg = config.config_class()(output_dir=str(tmp_path / "out"), use_cpu=True, pathy_file="f.txt")
    config.save_config(cfg, tmp_path / "cfg.yaml")
    assert f"pathy_file: {tmp_path / 'f.txt'}" in (tmp_path / "cfg.yaml").read_text()


def test_an_unknown_module_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="NO_SUCH"):
        config.NO_SUCH  # noqa: B018


# ---- a term's run setting, registered after llm_jepa.runs and the eval runner were imported --------
@dataclass
class _RunSettingOptions:
    modey_weight: float = option(0.0, "Weight of the test term (0 = off).", check=(lambda v: v >= 0, ">= 0"))
    modey_mode: str = option("a", "How the test term reads a run (a run setting).", roles=(RUN, FIXED))


@pytest.fixture
def run_setting_term():
    import llm_jepa.eval.runner  # noqa: F401 (imported before the registration, as a long-lived process does)
    import llm_jepa.runs  # noqa: F401
    import llm_jepa.train  # noqa: F401

    register_term("modey", Term(lambda inputs: torch.zeros(()), "modey_weight", needs_views=False,
                                options=_RunSettingOptions))
    yield
    del TERMS["modey"]


def test_a_later_terms_run_setting_is_read_back_overridden_and_flagged(run_setting_term, tmp_path):
    # before: runs.SETTINGS was computed at import, so the term's option was no run setting: eval had no
    # flag for it, TrainedRun.settings() (the eval's resume identity) left it out
    import argparse

    from llm_jepa.runs import SETTINGS, add_run_arguments, load_run, run_overrides
    from tests._factory import make_tokenizer

    assert "modey_mode" in SETTINGS and "modey_mode" in dict(SETTINGS)
    make_tokenizer("chatml").save_pretrained(tmp_path)
    (tmp_path / "llm_jepa_config.yaml").write_text("modey_weight: 0.5\nmodey_mode: b\n")
    run = load_run(tmp_path, weights=False)
    assert run.settings()["modey_mode"] == "b"  # as trained
    assert run.with_overrides(modey_mode="c").settings()["modey_mode"] == "c"
    assert run.with_overrides().settings()["modey_mode"] == "b"
    assert load_run(tmp_path, weights=False, modey_mode="c").settings()["modey_mode"] == "c"
    parser = argparse.ArgumentParser()
    add_run_arguments(parser, predictors=dict(type=int))
    assert run_overrides(parser.parse_args(["--modey-mode", "c"])) == {"modey_mode": "c"}


def test_a_resumed_eval_with_another_term_run_setting_is_refused(run_setting_term, tmp_path):
    from llm_jepa.eval.runner import evaluate
    from llm_jepa.runs import in_memory_run
    from tests._factory import make_tokenizer, tiny_llama, write_rows
    from tests.test_train import ROWS

    tok = make_tokenizer("chatml")
    data = write_rows(tmp_path / "d.jsonl", ROWS[:2])
    run = in_memory_run(tiny_llama(tok), tok, {"modey_mode": "b"})
    out = tmp_path / "eval"
    evaluate(run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex", similarity=False)
    with pytest.raises(FileExistsError, match=r"modey_mode .b. -> .c."):
        evaluate(run, data, limit=2, output=out, quiet=True, max_new_tokens=2, task="regex", similarity=False,
                 settings={"modey_mode": "c"})


def test_resume_fixed_follows_a_later_term(run_setting_term):
    # before: train.RESUME_FIXED was a tuple computed at import, without the later term's options
    import llm_jepa.train as train_mod

    assert "modey_mode" in train_mod.RESUME_FIXED and "modey_weight" in train_mod.RESUME_FIXED


@pytest.mark.parametrize("command", ["bench", "demo"])
def test_a_later_tiny_model_size_is_a_choice_of_bench_and_demo(command, monkeypatch):
    """``--size`` takes its choices from :data:`llm_jepa.toy.tiny.SIZES` when the parser is built, in
    both commands that build a tiny model (bench had its own list)."""
    from llm_jepa.cli import build_parser
    from llm_jepa.toy import tiny

    monkeypatch.setitem(tiny.SIZES, "nano", (32, 1, 2))
    args = build_parser().parse_args([command, "--size", "nano"])
    assert args.size == "nano"
