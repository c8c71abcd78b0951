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
