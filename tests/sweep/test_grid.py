import pytest

from llm_jepa.sweep.grid import DEFAULT_SEEDS, SweepError, cell_id, expand, load_sweep, sweep_from_dict


def _sweep(**extra):
    data = {"base": "train.yaml", "grid": {"k": [0, 1, 2], "lambda": [0.5, 1.0]}, **extra}
    return sweep_from_dict(data, "s.yaml")


def test_expansion_is_cells_times_seeds_with_baseline_first():
    runs = expand(_sweep(baseline={"regular": True}, seeds=[1, 2]))
    assert len(runs) == (1 + 3 * 2) * 2
    assert [r.run_id for r in runs[:2]] == ["baseline__seed1", "baseline__seed2"]
    assert runs[0].baseline and not runs[2].baseline
    assert {(r.cell["k"], r.cell["lambda"]) for r in runs[2:]} == {(k, lam) for k in (0, 1, 2) for lam in (0.5, 1.0)}
    assert runs[2].overrides == {"k": 0, "lambda": 0.5, "seed": 1}
    assert len({r.run_id for r in runs}) == len(runs)


def test_default_seeds_are_the_papers():
    assert DEFAULT_SEEDS == (82, 23, 37, 84, 4)
    assert {r.seed for r in expand(_sweep())} == set(DEFAULT_SEEDS)


def test_ids_do_not_depend_on_key_order():
    assert cell_id({"k": 1, "lambda": 0.5}) == cell_id({"lambda": 0.5, "k": 1}) == "k=1_lambda=0.5"
    assert cell_id({"regular": True, "note": "a/b c"}) == "note=a-b-c_regular=true"


def test_grid_cell_equal_to_baseline_is_not_duplicated():
    runs = expand(sweep_from_dict({"base": "t.yaml", "grid": {"lambda": [0, 1]}, "baseline": {"lambda": 0},
                                   "seeds": [5]}))
    assert [r.run_id for r in runs] == ["baseline__seed5", "lambda=1__seed5"]


def test_equal_compute_ties_each_run_to_the_baseline_of_its_seed():
    runs = expand(_sweep(baseline={"regular": True}, seeds=[1, 2], fixed={"max_steps": 9}, equal_compute=True))
    assert all(r.compute_reference is None and "compute_reference" not in r.spec() for r in runs if r.baseline)
    jepa = [r for r in runs if not r.baseline]
    assert all(r.compute_reference == {"max_steps": 9, "regular": True, "seed": r.seed} for r in jepa)
    assert "compute_reference" in jepa[0].spec()  # a changed setting is caught when resuming
    assert all(r.compute_reference is None for r in expand(_sweep(baseline={"regular": True})))


def test_fixed_overrides_reach_every_run_and_paths_resolve(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("base: train.yaml\neval_data: data/test.jsonl\nfixed: {num_train_epochs: 2}\n"
                    "grid: {k: [1]}\nseeds: [3]\n")
    sweep = load_sweep(path)
    (run,) = expand(sweep)
    assert run.overrides == {"num_train_epochs": 2, "k": 1, "seed": 3}
    assert run.base == str(tmp_path / "train.yaml") and run.eval_data == str(tmp_path / "data/test.jsonl")


@pytest.mark.parametrize("data, field", [
    ({"grid": {"k": [1]}}, "base"),
    ({"base": "t.yaml"}, "grid"),
    ({"base": "t.yaml", "grid": {"k": []}}, "grid.k"),
    ({"base": "t.yaml", "grid": {"k": [1]}, "seeds": [1, 1]}, "seeds"),
    ({"base": "t.yaml", "grid": {"k": [1]}, "seeds": ["a"]}, "seeds"),
    ({"base": "t.yaml", "grid": {"k": [1]}, "baseline": [1]}, "baseline"),
    ({"base": "t.yaml", "grid": {"k": [1]}, "sedes": [1]}, "sedes"),
    ({"base": "t.yaml", "grid": {"k": [1]}, "equal_compute": True}, "equal_compute"),  # no baseline to match
    ({"base": "t.yaml", "grid": {"k": [1]}, "baseline": {"regular": True}, "equal_compute": "yes"}, "equal_compute"),
])
def test_bad_sweep_files_name_the_field(data, field):
    with pytest.raises(SweepError, match=f"s.yaml: field '{field}'"):
        sweep_from_dict(data, "s.yaml")


# ---- named arms: cells with names, the demo's grid ----------------------------------------------------------
ARMS = {"baseline": {"regular": True}, "jepa": {"predictors": 1, "jepa_lambda": 1.0},
        "baseline_equal_compute": {"regular": True}}


def test_named_arms_are_cells_named_by_their_arm_in_the_files_order():
    runs = expand(sweep_from_dict({"base": "t.yaml", "arms": ARMS, "fixed": {"max_steps": 9}, "seeds": [1, 2]}))
    assert [r.run_id for r in runs] == ["baseline__seed1", "baseline__seed2", "jepa__seed1", "jepa__seed2",
                                        "baseline_equal_compute__seed1", "baseline_equal_compute__seed2"]
    # the arm named baseline is the baseline cell; another arm with the same options is a cell of its own
    assert [r.baseline for r in runs] == [True, True, False, False, False, False]
    assert runs[2].cell == ARMS["jepa"] and runs[2].overrides == {"max_steps": 9, "predictors": 1, "jepa_lambda": 1.0,
                                                                  "seed": 1}
    assert all(r.compute_reference is None for r in runs)


def test_an_arm_may_spend_the_flops_of_the_arm_it_names():
    sweep = sweep_from_dict({"base": "t.yaml", "arms": ARMS, "fixed": {"max_steps": 9}, "seeds": [5],
                             "equal_compute": {"baseline_equal_compute": "jepa"}})
    refs = {r.cell_id: r.compute_reference for r in expand(sweep)}
    assert refs == {"baseline": None, "jepa": None,
                    "baseline_equal_compute": {"max_steps": 9, "predictors": 1, "jepa_lambda": 1.0, "seed": 5}}


def test_arms_go_beside_a_grid_and_a_baseline_field_and_at_every_amount_of_data():
    sweep = sweep_from_dict({"base": "t.yaml", "grid": {"k": [1]}, "baseline": {"regular": True},
                             "arms": {"stp": {"stp_lambda": 0.02}}, "seeds": [3], "data_rows": [10, 20],
                             "equal_compute": {"stp": "baseline"}})
    runs = expand(sweep)
    assert [r.cell_id for r in runs] == ["baseline_train_rows=10", "baseline_train_rows=20", "k=1_train_rows=10",
                                         "k=1_train_rows=20", "stp_train_rows=10", "stp_train_rows=20"]
    assert runs[-1].compute_reference == {"regular": True, "train_rows": 20, "seed": 3}


@pytest.mark.parametrize("data, field", [
    ({"base": "t.yaml", "arms": []}, "arms"),
    ({"base": "t.yaml", "arms": {"a/b": {}}}, "arms"),
    ({"base": "t.yaml", "arms": {"a": [1]}}, "arms.a"),
    ({"base": "t.yaml", "arms": {"baseline": {}}, "baseline": {"regular": True}}, "arms.baseline"),
    ({"base": "t.yaml", "arms": {"a": {}}, "equal_compute": {"a": "b"}}, "equal_compute"),
    ({"base": "t.yaml", "arms": {"a": {}, "b": {}}, "equal_compute": {"a": "a"}}, "equal_compute"),
    ({"base": "t.yaml", "arms": {"a": {}, "b": {}, "c": {}}, "equal_compute": {"a": "b", "b": "c"}}, "equal_compute"),
    ({"base": "t.yaml", "arms": {"a": {}}, "equal_compute": True}, "equal_compute"),  # no baseline
])
def test_bad_arms_name_the_field(data, field):
    with pytest.raises(SweepError, match=f"s.yaml: field '{field}'"):
        sweep_from_dict(data, "s.yaml")


def test_a_key_of_an_arm_that_is_no_training_option_is_named():
    from llm_jepa.sweep.grid import check_keys

    with pytest.raises(SweepError, match=r"field 'arms.jepa.jepa_lamda': not a training option"):
        check_keys(sweep_from_dict({"base": "t.yaml", "arms": {"jepa": {"jepa_lamda": 1.0}}}, "s.yaml"))


def test_a_fixed_option_that_one_cell_leaves_unread_is_named_before_any_run(tmp_path):
    # before: check_keys accepted it and every run of the stp_lambda 0 cells failed at its start, the
    # reason only in each run's error.txt (train refuses an option its switch leaves unread)
    from llm_jepa.sweep.grid import check_keys

    (tmp_path / "t.yaml").write_text("k: 1\n")
    spec = {"base": "t.yaml", "grid": {"stp_lambda": [0.0, 0.02]}, "fixed": {"stp_times": 4},
            "baseline": {"regular": True, "stp_lambda": 0.02}}
    with pytest.raises(SweepError, match=r"cell stp_lambda=0.0: stp_times 4 \(from fixed\) does nothing with stp_lambda 0.0"):
        check_keys(sweep_from_dict(spec, "s.yaml", tmp_path))
    spec["grid"] = {"stp_lambda": [0.01, 0.02]}  # every cell reads it
    check_keys(sweep_from_dict(spec, "s.yaml", tmp_path))
    (tmp_path / "t.yaml").write_text("stp_lambda: 0.02\n")  # the base config switches it on for a cell that sets nothing
    check_keys(sweep_from_dict({**spec, "grid": {"k": [1, 2]}, "baseline": {"regular": True}}, "s.yaml", tmp_path))
    with pytest.raises(SweepError, match=r"cell baseline: stp_times 4 \(from fixed\)"):
        check_keys(sweep_from_dict({**spec, "grid": {"k": [1, 2]}, "baseline": {"regular": True, "stp_lambda": 0}},
                                   "s.yaml", tmp_path))
