"""The demo's arms are a sweep grid (issue 25 section 5), and its option lists come from its fields' roles."""

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llm_jepa.demo import run as demo_run
from llm_jepa.demo.run import ARMS, DemoConfig, demo_sweep, fields_with
from llm_jepa.options import CONTROL, PATH, SPEED
from llm_jepa.sweep.grid import expand, sweep_from_dict


@pytest.mark.parametrize("arms", [["baseline", "baseline_equal_compute", "jepa"], ["jepa", "stp"],
                                  ["baseline_equal_compute", "baseline"]])
@pytest.mark.parametrize("protocol", ["default", "paper"])
def test_the_demos_arms_are_what_expand_gives_for_the_same_sweep_file(arms, protocol):
    from llm_jepa.protocols import demo_overrides

    cfg = DemoConfig(arms=arms, protocol=protocol, seed=7, learning_rate=3e-4)
    runs = expand(demo_sweep(cfg, Path("/b"), Path("/t.jsonl")))
    # the same grid written as a sweep file: the common settings fixed, each arm a named cell
    ordered = [a for a in arms if a != "baseline_equal_compute"] + [a for a in arms if a == "baseline_equal_compute"]
    matched = {"baseline_equal_compute": "jepa"} if {"baseline", "jepa", "baseline_equal_compute"} <= set(arms) else {}
    fixed = {**demo_run._common_settings(cfg, Path("/b"), Path("/t.jsonl")), **demo_overrides(protocol)}
    file = sweep_from_dict({"base": "unused.yaml", "fixed": fixed, "arms": {a: ARMS[a] for a in ordered},
                            "seeds": [7], "equal_compute": matched or False})
    assert [(r.run_id, r.cell_id, r.cell, r.baseline, r.overrides, r.compute_reference) for r in runs] == \
        [(r.run_id, r.cell_id, r.cell, r.baseline, r.overrides, r.compute_reference) for r in expand(file)]
    assert [r.cell_id for r in runs] == ordered  # the equal-compute arm after the arms it is counted from
    assert all(r.overrides["seed"] == 7 and r.overrides["learning_rate"] == 3e-4 for r in runs)


def test_the_equal_compute_arm_spends_the_jepa_arms_flops_only_beside_it_and_the_baseline():
    refs = {r.cell_id: r.compute_reference for r in expand(demo_sweep(DemoConfig(), Path("b"), Path("t")))}
    assert refs["baseline"] is None and refs["jepa"] is None
    assert refs["baseline_equal_compute"]["jepa_lambda"] == ARMS["jepa"]["jepa_lambda"]
    alone = DemoConfig(arms=["baseline_equal_compute", "jepa"])  # no baseline to count its cost per step on
    assert all(r.compute_reference is None for r in expand(demo_sweep(alone, Path("b"), Path("t"))))


def test_the_option_lists_are_the_fields_roles():
    assert fields_with(PATH) == ("output", "data", "test_data")
    assert set(fields_with(*demo_run.NOT_SETTINGS)) == {"overwrite", "arms", "threads", "final_models_only"}


def test_a_new_field_with_a_role_lands_in_its_list_without_another_edit(monkeypatch, tmp_path):
    @dataclass
    class Wider(DemoConfig):
        cache: str | None = field(default=None, metadata=demo_run._roles(PATH, SPEED))  # a path, no setting
        retries: int = field(default=0, metadata=demo_run._roles(CONTROL))

    assert "cache" in fields_with(PATH, cls=Wider) and "cache" not in fields_with(PATH)
    monkeypatch.setattr(demo_run, "DemoConfig", Wider)
    monkeypatch.chdir(tmp_path)
    assert demo_run._absolute({"cache": "c"})["cache"] == str(tmp_path / "c")  # resolved as a path
    settings = demo_run._settings({"cache": "c", "retries": 3})
    assert "cache" not in settings and "retries" not in settings and settings["steps"] == DemoConfig().steps
