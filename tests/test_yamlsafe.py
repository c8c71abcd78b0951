"""YAML files: aliases cannot expand a config or sweep file without bound (billion laughs, issue 27)."""

import time

import pytest

from llm_jepa.config import ConfigError, load_config
from llm_jepa.sweep.grid import SweepError, load_sweep

# nine levels of nine aliases: about 9^9 values once expanded, a few hundred bytes on disk
LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))


def test_a_config_whose_aliases_explode_is_refused_at_once(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(LAUGHS + "output_dir: out\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"run.yaml: invalid YAML: its anchors and aliases expand to [0-9,]{11} values"):
        load_config(str(path))
    assert time.perf_counter() - start < 5


def test_a_sweep_file_whose_aliases_explode_is_refused(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text(LAUGHS + "base: t.yaml\ngrid: {k: [1]}\n")
    with pytest.raises(SweepError, match="expand to"):
        load_sweep(path)


def test_ordinary_anchors_still_load(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: &o out\nrun_name: *o\nlearning_rate: 0.001\n")
    cfg = load_config(str(path))
    assert cfg.run_name == "out" and cfg.learning_rate == 0.001


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path):
    # red team: max_steps: 1 then max_steps: 5 trained 5 steps, silently
    path = tmp_path / "run.yaml"
    path.write_text("output_dir: out\nmax_steps: 1\nlearning_rate: 0.001\nmax_steps: 5\n")
    with pytest.raises(ConfigError, match=r"line 4: key 'max_steps' is given twice \(first on line 2\)"):
        load_config(path)
    nested = tmp_path / "sweep.yaml"
    nested.write_text("base: run.yaml\ngrid:\n  predictors: [0, 1]\n  predictors: [2]\n")
    with pytest.raises(SweepError, match="key 'predictors' is given twice"):
        load_sweep(nested)
