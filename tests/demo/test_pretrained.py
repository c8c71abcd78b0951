"""The demo from a pretrained model (--model) with LoRA and a seeded subset of --data."""

from pathlib import Path

import pytest
import yaml

from llm_jepa.demo.nlrx import make_splits, write_jsonl
from llm_jepa.demo.run import DemoConfig, _train_subset, run_demo
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
    (["--model", "m"], (1e-4, 8, ["baseline", "jepa"])),  # fine-tuning a pretrained model
    (["--model", "m", "--learning-rate", "2e-5", "--batch-size", "4", "--arms", "jepa"], (2e-5, 4, ["jepa"])),
])
def test_demo_defaults_follow_the_starting_model(monkeypatch, argv, expected):
    from llm_jepa.cli import main
    from llm_jepa.demo import run

    seen = []
    monkeypatch.setattr(run, "run_demo", seen.append)
    assert main(["demo", *argv]) == 0
    assert (seen[0].learning_rate, seen[0].batch_size, seen[0].arms) == expected
