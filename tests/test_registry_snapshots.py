"""Lists of training options that follow the term registry: a term registered after ``import
llm_jepa.config`` is in them (they were once computed at import)."""

from dataclasses import dataclass

import pytest
import torch

from llm_jepa import config
from llm_jepa.objective import TERMS, Term, register_term
from llm_jepa.options import PATH, option


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
