"""The demo from a pretrained model (--model) with LoRA and a seeded subset of --data."""

import json
from pathlib import Path

import pytest
import yaml

from llm_jepa.demo.run import DemoConfig, _train_subset, run_demo
from llm_jepa.toy.nlrx import make_splits, write_jsonl
from tests._factory import make_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained")
    train, test = make_splits(40, 4, seed=5)
    write_jsonl(train, d / "train.jsonl")
    write_jsonl(test, d / "test.jsonl")
    tok = make_tokenizer("chatml")
    tiny_llama(tok).save_pretrained(d / "ckpt")
    tok.save_pretrained(d / "ckpt")
    return d


def test_train_subset_is_fixed_by_the_seed_and_keeps_file_order(files, tmp_path):
    lines = (files / "train.jsonl").read_text().splitlines()
    a = _train_subset(files / "train.jsonl", 12, 1, tmp_path / "a").read_text().splitlines()
    again = _train_subset(files / "train.jsonl", 12, 1, tmp_path / "b").read_text().splitlines()
    other = _train_subset(files / "train.jsonl", 12, 2, tmp_path / "c").read_text().splitlines()
    assert a == again != other and len(a) == 12
    assert [lines.index(x) for x in a] == sorted(lines.index(x) for x in a)
    assert _train_subset(files / "train.jsonl", 40, 1, tmp_path / "d") == files / "train.jsonl"  # all rows
    larger = _train_subset(files / "train.jsonl", 30, 1, tmp_path / "e").read_text().splitlines()
    assert set(a) < set(larger)  # nested: a data-efficiency curve adds rows, it does not redraw them


def test_demo_from_a_pretrained_model_with_lora(files, tmp_path):
    out = tmp_path / "demo"
    cfg = DemoConfig(output=str(out), model=str(files / "ckpt"), lora=True, data=str(files / "train.jsonl"),
                     test_data=str(files / "test.jsonl"), n_train=12, n_test=4, steps=2, batch_size=4,
                     arms=["baseline", "jepa"], max_new_tokens=4, view_system="none", threads=1)
    results = run_demo(cfg)
    assert not (out / "base").exists()  # no tiny model was built
    assert len((out / "data" / "train.jsonl").read_text().splitlines()) == 12
    for arm in ("baseline", "jepa"):
        run = out / "runs" / arm
        assert (run / "adapter_config.json").exists()
        saved = yaml.safe_load((run / "llm_jepa_config.yaml").read_text())
        assert saved["lora"] and saved["view_system"] == "none" and saved["threads"] == 1
        assert results["arms"][arm]["summary"]["n"] == 4
    assert "collapsed" in results["base"]["diagnostics"]["code_collapse"]
    assert "Base model before training" in Path(out / "report.md").read_text()


@pytest.mark.parametrize(("argv", "expected"), [
    ([], (1e-3, 32, ["baseline", "jepa", "baseline_equal_compute"])),
    (["--model", "m"], (1e-4, 8, ["baseline", "jepa", "stp"])),  # fine-tuning a pretrained model: issue 14's three arms
    (["--model", "m", "--learning-rate", "2e-5", "--batch-size", "4", "--arms", "jepa"], (2e-5, 4, ["jepa"])),
])
def test_demo_defaults_follow_the_starting_model(monkeypatch, argv, expected):
    from llm_jepa.cli import main
    from llm_jepa.demo import run

    seen = []
    monkeypatch.setattr(run, "run_demo", lambda cfg, **k: seen.append(cfg))
    assert main(["demo", *argv]) == 0
    assert (seen[0].learning_rate, seen[0].batch_size, seen[0].arms) == expected


def test_validation_rows_are_the_last_of_the_seeds_permutation_and_never_trained_on(files, tmp_path):
    import random

    from llm_jepa.demo.run import _validation_split

    lines = (files / "train.jsonl").read_text().splitlines()
    val = _validation_split(files / "train.jsonl", 12, 8, 1, tmp_path / "v").read_text().splitlines()
    order = random.Random(1).sample(range(len(lines)), len(lines))  # the documented rule, written out
    assert val == [lines[i] for i in sorted(order[-8:])]
    # outside the training subset of this seed, and of every larger subset up to 40 - 8 rows
    for n in (12, 32):
        assert not set(val) & set(_train_subset(files / "train.jsonl", n, 1, tmp_path / f"t{n}").read_text().splitlines())
    with pytest.raises(ValueError, match=r"train\.jsonl: 40 rows cannot hold 33 training rows and 8"):
        _validation_split(files / "train.jsonl", 33, 8, 1, tmp_path / "w")


def test_demo_tunes_the_learning_rate_on_held_out_rows_and_trains_every_arm_at_the_winner(files, tmp_path,
                                                                                            monkeypatch):
    import llm_jepa.demo.run as demo_run
    import llm_jepa.train as train_mod

    trained, evaluated = [], []
    real_train, real_eval = train_mod.train, demo_run._evaluate_arm

    def counting_train(cfg, *a, **k):
        trained.append((Path(cfg.output_dir).relative_to(out).as_posix(), cfg.learning_rate))
        return real_train(cfg, *a, **k)

    def scripted_eval(cfg, run_dir, data, limit=None, name="eval"):
        summary = real_eval(cfg, run_dir, data, limit=limit, name=name)
        evaluated.append((Path(data).name, name, summary["n"]))
        if name == "eval-validation":  # the larger rate wins on validation, so no tie rule picks it
            rate = yaml.safe_load((run_dir / "llm_jepa_config.yaml").read_text())["learning_rate"]
            summary["metrics"]["exact"]["accuracy"] = {1e-3: 0.5, 1e-4: 0.25}[rate]
        return summary

    monkeypatch.setattr(train_mod, "train", counting_train)
    monkeypatch.setattr(demo_run, "_evaluate_arm", scripted_eval)
    out = tmp_path / "demo"
    cfg = DemoConfig(output=str(out), model=str(files / "ckpt"), lora=True, data=str(files / "train.jsonl"),
                     test_data=str(files / "test.jsonl"), n_train=12, n_test=4, steps=2, batch_size=4,
                     arms=["baseline", "jepa"], max_new_tokens=4, view_system="none", threads=1,
                     tune_learning_rates=[1e-4, 1e-3], n_validation=6)
    results = run_demo(cfg)
    t = results["tuning"]
    assert t["chosen"] == 1e-3 and results["config"]["learning_rate"] == 1e-3
    assert {r["exact"] for r in t["rates"].values()} == {0.5, 0.25}
    # the plain arm once per rate, JEPA once at the winner; the winner's plain arm is the baseline
    assert sorted(trained) == [("lr-0.0001/runs/baseline", 1e-4), ("lr-0.001/runs/baseline", 1e-3),
                               ("lr-0.001/runs/jepa", 1e-3)]
    assert results["arms"]["baseline"]["run_dir"] == "lr-0.001/runs/baseline"
    # validation evaluated on the held-out rows of the training file, the arms on the test rows
    assert sorted(evaluated) == [("test.jsonl", "eval", 4), ("test.jsonl", "eval", 4),
                                 ("validation.jsonl", "eval-validation", 6), ("validation.jsonl", "eval-validation", 6)]
    train_rows = set((out / "data" / "train.jsonl").read_text().splitlines())
    assert not train_rows & set((out / t["validation_file"]).read_text().splitlines())
    report = (out / "report.md").read_text()
    assert "Learning rate tuned on 6 rows" in report and "0.0001: 0.250, 0.001: 0.500" in report
    # a rerun reuses every run
    trained.clear()
    assert run_demo(cfg)["tuning"]["chosen"] == 1e-3 and trained == []


def test_a_tie_on_validation_goes_to_the_smaller_rate(tmp_path, monkeypatch):
    import llm_jepa.demo.run as demo_run

    monkeypatch.setattr(demo_run, "_validation_split", lambda *a: tmp_path / "validation.jsonl")
    monkeypatch.setattr(demo_run, "_train_arm", lambda cfg, name, base, train, steps, out: (out / "runs" / name, False))
    monkeypatch.setattr(demo_run, "_evaluate_arm",
                        lambda *a, **k: {"metrics": {"exact": {"accuracy": 0.4, "n": 3, "ci95": [0, 1]}}})
    cfg = DemoConfig(output=str(tmp_path), data="d.jsonl", test_data="t.jsonl", tune_learning_rates=[3e-4, 1e-4, 2e-4])
    assert demo_run._tune_learning_rate(cfg, tmp_path, tmp_path, tmp_path, 0.0)["chosen"] == 1e-4


@pytest.mark.parametrize(("argv", "message"), [
    (["--tune-lr", "1e-4", "2e-4", "--learning-rate", "1e-4"], "not both"),
    (["--tune-lr", "1e-4", "2e-4"], "needs --data"),
    (["--tune-lr", "1e-4", "--data", "x.jsonl", "--test-data", "y.jsonl"], "at least two distinct"),
    (["--tune-lr", "1e-4", "1e-4", "--data", "x.jsonl", "--test-data", "y.jsonl"], "at least two distinct"),
    (["--tune-lr", "1e-4", "nan", "--data", "x.jsonl", "--test-data", "y.jsonl"], "finite"),
    (["--tune-lr", "1e-4", "2e-4", "--n-validation", "0", "--data", "x.jsonl", "--test-data", "y.jsonl"],
     "n_validation"),
])
def test_bad_tuning_options_fail_before_anything_is_written(tmp_path, capsys, argv, message):
    from llm_jepa.cli import main

    out = tmp_path / "out"
    try:
        rc = main(["demo", "--output", str(out), "--size", "micro", *argv])
    except SystemExit as e:
        rc, err = 2, str(e)
    else:
        err = capsys.readouterr().err
    assert rc == 2 and message in err and not out.exists()


def _tuned(files, out, **kw):
    return DemoConfig(**{**dict(output=str(out), model=str(files / "ckpt"), lora=True, data=str(files / "train.jsonl"),
                                test_data=str(files / "test.jsonl"), n_train=12, n_test=4, steps=2, batch_size=4,
                                arms=["baseline"], max_new_tokens=4, view_system="none", threads=1,
                                tune_learning_rates=[1e-4, 1e-3], n_validation=6), **kw})


def test_a_demo_made_before_tuning_existed_is_still_reused(files, tmp_path, monkeypatch):
    # red team: a demo_config.json written before --tune-lr has no tune_learning_rates / n_validation,
    # and every such output (adding an arm, say) was refused as "other settings"
    import json

    import llm_jepa.train as train_mod

    out = tmp_path / "demo"
    cfg = _tuned(files, out, tune_learning_rates=None)
    run_demo(cfg)
    marker = json.loads((out / "demo_config.json").read_text())
    for key in ("tune_learning_rates", "n_validation"):
        del marker[key]
    (out / "demo_config.json").write_text(json.dumps(marker))
    trained = []
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: trained.append(a))
    run_demo(cfg)
    assert trained == []


def test_settings_ignore_the_order_of_the_rates_and_the_validation_size_without_tuning():
    from dataclasses import asdict

    from llm_jepa.demo.run import _settings

    tuned = asdict(DemoConfig(data="d.jsonl", test_data="t.jsonl", tune_learning_rates=[1e-3, 1e-4]))
    assert _settings(tuned) == _settings({**tuned, "tune_learning_rates": [1e-4, 1e-3]})
    assert _settings(tuned) != _settings({**tuned, "n_validation": 7})
    plain = asdict(DemoConfig())
    assert _settings(plain) == _settings({**plain, "n_validation": 7})


def test_a_split_the_file_cannot_hold_fails_before_anything_is_written(files, tmp_path):
    # red team: it failed after demo_config.json was written, and the corrected rerun was refused
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match="40 rows cannot hold 40 training rows and 6"):
        run_demo(_tuned(files, out, n_train=40))
    assert not out.exists()


def test_rates_that_would_share_a_folder_are_refused():
    # red team: 1e-4 and 1.0000001e-4 both trained into lr-0.0001/ and one result was dropped
    with pytest.raises(ValueError, match="distinct in 6 significant digits"):
        DemoConfig(data="d.jsonl", test_data="t.jsonl", tune_learning_rates=[1e-4, 1.0000001e-4])


def test_a_validation_row_that_duplicates_a_training_row_is_skipped(tmp_path):
    import random

    from llm_jepa.demo.run import _validation_rows

    rows = [f'{{"i": {i}}}' for i in range(20)]
    order = random.Random(3).sample(range(20), 20)
    rows[order[-1]] = rows[order[0]]  # the last row of the permutation repeats a training row
    (tmp_path / "d.jsonl").write_text("\n".join(rows) + "\n")
    lines, held = _validation_rows(tmp_path / "d.jsonl", 5, 4, 3)
    assert held == [order[-2], order[-3], order[-4], order[-5]]
    assert not {lines[i] for i in held} & {lines[i] for i in order[:5]}


def test_the_tables_name_each_seeds_tuned_rate():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_table", Path(__file__).parents[2] / "scripts" / "demo_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    tuning = {"n_validation": 300, "rates": {"2e-05": {"learning_rate": 2e-5, "exact": 0.1},
                                             "0.0001": {"learning_rate": 1e-4, "exact": 0.5}}}
    assert table._rate_cell({"learning_rate": 1e-4, "tuning": tuning}) == \
        "0.0001 (tuned on 300 validation rows: 2e-05: 0.100, 0.0001: 0.500)"
    assert table._rate_cell({"learning_rate": 2e-5, "tuning": None}) == "2e-05"


def test_arms_keep_one_checkpoint_and_arms_saved_with_two_are_still_reused(tmp_path, monkeypatch):
    # two 1.6 GB checkpoints per SmolLM2 arm filled the disk during the protocol's runs
    import llm_jepa.train as train_mod
    from llm_jepa.demo import run as demo_run

    seen = {}
    monkeypatch.setattr(train_mod, "train", lambda cfg: seen.update(limit=cfg.save_total_limit))
    demo_run._train_arm(DemoConfig(output=str(tmp_path)), "baseline", tmp_path, tmp_path / "t.jsonl", 4, tmp_path)
    assert seen["limit"] == 1
    run = tmp_path / "runs" / "old"
    run.mkdir(parents=True)
    (run / "llm_jepa_config.yaml").write_text(yaml.safe_dump({"max_steps": 4, "save_total_limit": None}))
    assert demo_run._trained_with(run, {"max_steps": 4, "save_total_limit": 1})
    assert not demo_run._trained_with(run, {"max_steps": 5, "save_total_limit": 1})


def test_a_model_without_a_chat_template_is_refused_before_anything_is_written(tmp_path):
    """A converted GGUF base model has no chat template: the demo failed at its first arm, after
    writing its folder and computing the base model's diagnostics, naming a flag it does not have."""
    from tests._factory import write_checkpoint

    ckpt = write_checkpoint(tmp_path / "base-model")
    config = tmp_path / "base-model" / "tokenizer_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "chat_template"}))
    (tmp_path / "base-model" / "chat_template.jinja").unlink(missing_ok=True)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="no chat template.*llm-jepa train --plain_text"):
        run_demo(DemoConfig(output=str(out), model=str(ckpt), n_train=8, n_test=2, steps=1, batch_size=4,
                            arms=["baseline"], max_new_tokens=2))
    assert not out.exists()
