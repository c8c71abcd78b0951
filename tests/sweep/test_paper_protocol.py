"""The paper's protocol as a preset (issue 28): the file, its sources, train/demo/sweep through it, the
selection grid's sweep files, and a tiny sweep through the preset that chooses a cell on the test rows
and on held-out training rows."""

import json
import math
from pathlib import Path

import pytest
import yaml

from llm_jepa.config import load_config
from llm_jepa.protocols import PROTOCOLS, demo_overrides, holdout_split, protocol_settings
from llm_jepa.sweep.grid import SweepError, expand, load_sweep, sweep_from_dict
from llm_jepa.sweep.report import selection, selection_markdown
from tests._factory import conv, write_run_inputs

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESET = CONFIGS / "paper_protocol.yaml"
REGEX = "Convert natural language to regular expression."
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}", REGEX)
        for w in ("dog", "truck", "ring", "lake") for n in range(1, 5)]


def test_the_repository_preset_is_the_packaged_one():
    assert PRESET.read_text() == PROTOCOLS["paper"].read_text()


def test_the_preset_holds_the_released_settings():
    cfg = load_config(PRESET, overrides={"output_dir": "/tmp/unused", "model_name_or_path": "m"})
    assert (cfg.learning_rate, cfg.num_train_epochs, cfg.per_device_train_batch_size) == (2e-5, 4, 4)
    assert cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps == 128  # 4 x 4 x 8 GPUs, on one process
    assert str(cfg.lr_scheduler_type.value) == "linear" and cfg.warmup_steps == 0 and cfg.weight_decay == 0
    assert (cfg.adam_beta1, cfg.adam_beta2, cfg.max_grad_norm) == (0.9, 0.999, 1.0)
    assert cfg.label_mode == "paper" and (cfg.predictors, cfg.jepa_lambda, cfg.gamma) == (1, 1.0, 1.0)
    assert cfg.distance == "cosine" and cfg.max_length == 512 and cfg.bf16 and not cfg.lora


def test_every_setting_of_the_preset_names_its_source():
    """Each option carries a comment on its line or in the comment block right above it."""
    lines = PRESET.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#") and ":" in line:
            above = lines[i - 1] if i else ""
            assert "#" in line or above.startswith("#"), f"line {i + 1} has no source: {line}"
    assert set(yaml.safe_load(PRESET.read_text())) == set(protocol_settings("paper"))


def test_the_demo_takes_the_recipe_and_keeps_its_scale():
    got = demo_overrides("paper")
    assert got["lr_scheduler_type"] == "linear" and got["warmup_steps"] == 0 and got["weight_decay"] == 0.0
    assert got["label_mode"] == "paper"
    assert not {"learning_rate", "per_device_train_batch_size", "num_train_epochs", "bf16"} & set(got)
    assert demo_overrides("default") == {}
    with pytest.raises(ValueError, match="unknown protocol 'papr'"):
        protocol_settings("papr")


def test_the_demo_trains_its_arms_with_the_paper_recipe(tmp_path, monkeypatch):
    from llm_jepa.demo import run as demo

    seen = []
    monkeypatch.setattr("llm_jepa.train.train", lambda cfg: seen.append(cfg))
    cfg = demo.DemoConfig(output=str(tmp_path), protocol="paper", learning_rate=3e-4, steps=5)
    demo._train_arm(cfg, "baseline", tmp_path / "base", tmp_path / "train.jsonl", 5, tmp_path)
    (c,) = seen
    assert str(c.lr_scheduler_type.value) == "linear" and c.warmup_steps == 0 and c.weight_decay == 0
    assert c.label_mode == "paper" and c.learning_rate == 3e-4 and c.max_steps == 5 and c.regular


def test_train_protocol_flag_reads_the_preset(tmp_path, monkeypatch):
    from llm_jepa.cli import main

    seen = []
    monkeypatch.setattr("llm_jepa.train.train", lambda cfg: seen.append(cfg) or {})
    assert main(["train", "--protocol", "paper", "--model", "m", "--output_dir", str(tmp_path / "o"),
                 "--learning_rate", "1e-5"]) == 0
    assert seen[0].label_mode == "paper" and seen[0].learning_rate == 1e-5  # flags after it win
    assert main(["train", "--protocol", "paper", "--config", str(PRESET), "--output_dir", str(tmp_path)]) == 2


def test_the_selection_grid_sweep_files():
    base, jepa = load_sweep(CONFIGS / "sweep_paper_baseline.yaml"), load_sweep(CONFIGS / "sweep_paper_jepa.yaml")
    assert Path(base.base).resolve() == Path(jepa.base).resolve() == PROTOCOLS["paper"].resolve()
    assert base.grid == {"learning_rate": [1e-5, 2e-5, 4e-5, 8e-5]} and base.fixed["regular"] is True
    assert jepa.grid == {"predictors": [0, 1, 2, 3, 4], "jepa_lambda": [0.5, 1.0, 2.0, 4.0]}
    assert jepa.baseline == {"regular": True} and base.seeds == jepa.seeds == (82, 23, 37, 84, 4)
    assert len(expand(base)) == 20 and len(expand(jepa)) == 21 * 5
    assert base.holdout == jepa.holdout == {"rows": 500, "seed": 0}


def test_a_malformed_holdout_names_the_field():
    with pytest.raises(SweepError, match="field 'holdout'"):
        sweep_from_dict({"base": "b.yaml", "grid": {"k": [1]}, "holdout": {"rows": 0}}, "s.yaml")
    with pytest.raises(SweepError, match="holdout or selection_data, not both"):
        sweep_from_dict({"base": "b.yaml", "grid": {"k": [1]}, "holdout": 5, "selection_data": "h.jsonl"}, "s.yaml")


def test_holdout_rows_never_reach_training_even_as_duplicates(tmp_path):
    lines = [json.dumps({"messages": r}) for r in ROWS]
    src = tmp_path / "train.jsonl"
    src.write_text("\n".join(lines + lines[:3]) + "\n")  # the first three rows twice
    rest, held = holdout_split(src, 6, 0, tmp_path / "split")
    kept, out = rest.read_text().splitlines(), held.read_text().splitlines()
    assert len(out) == 6 and not set(kept) & set(out)
    assert set(kept) | set(out) == set(lines)
    again = holdout_split(src, 6, 0, tmp_path / "split")  # the same draw: files unchanged
    assert again[1].read_text().splitlines() == out
    with pytest.raises(ValueError, match="holdout rows must be in"):
        holdout_split(src, len(lines) + 3, 0, tmp_path / "x")


def _cell(cid, test, held, baseline=False):
    stats = {"cell_id": cid, "cell": {"c": cid}, "baseline": baseline, "n": 2, "mean": sum(test) / 2,
             "std": abs(test[0] - test[1]) / math.sqrt(2), "values": dict(enumerate(test))}
    runs = [{"cell_id": cid, "run_id": f"{cid}{i}", "summary": {"accuracy": t, "selection": {"accuracy": h}}}
            for i, (t, h) in enumerate(zip(test, held, strict=True))]
    return stats, runs


def test_selection_on_test_rows_and_on_held_out_rows_can_differ():
    cells = [_cell("base", [0.9, 0.9], [0.9, 0.9], baseline=True), _cell("a", [0.60, 0.70], [0.50, 0.50]),
             _cell("b", [0.55, 0.61], [0.60, 0.62])]
    stats, results = [s for s, _ in cells], [r for _, rs in cells for r in rs]
    sel = selection(results, stats)
    assert sel["on_test"]["cell_id"] == "a" and sel["on_heldout"]["cell_id"] == "b"  # the baseline never competes
    assert sel["optimism"] == pytest.approx(0.65 - 0.58)
    md = selection_markdown(sel)
    assert "| the test rows (the paper's choice) | a | 65.00 ±" in md and "| held-out training rows | b | 58.00 ±" in md
    assert selection([{**r, "summary": {"accuracy": 1.0}} for r in results], stats) is None


def test_a_tiny_sweep_through_the_preset_chooses_on_test_and_held_out_rows(tmp_path):
    from llm_jepa.sweep.cli import sweep

    write_run_inputs(tmp_path, ROWS)
    (tmp_path / "sweep.yaml").write_text(
        f"base: {PRESET}\neval_data: {tmp_path / 'train.jsonl'}\neval: {{limit: 4, max_new_tokens: 4}}\n"
        f"fixed: {{model_name_or_path: {tmp_path / 'ckpt'}, train_file: {tmp_path / 'train.jsonl'}, max_steps: 2,\n"
        "        per_device_train_batch_size: 2, gradient_accumulation_steps: 1, save_strategy: 'no', disable_tqdm: true,\n"
        "        max_length: 128, regular: true}\n"
        "grid:\n  learning_rate: [0.001, 0.003]\nholdout: {rows: 4, seed: 0}\nseeds: [1, 2]\n")
    out = tmp_path / "out"
    done = sweep(tmp_path / "sweep.yaml", out)
    assert len(done["ran"]) == 4 and not done["failed"]
    held = (out / "data" / "holdout.jsonl").read_text().splitlines()
    trained = (out / "data" / "train.jsonl").read_text().splitlines()
    assert len(held) == 4 and len(trained) == len(ROWS) - 4 and not set(held) & set(trained)
    for run in (out / "runs").iterdir():
        saved = yaml.safe_load((run / "train" / "llm_jepa_config.yaml").read_text())
        assert saved["train_file"] == str((out / "data" / "train.jsonl").resolve())
        assert (saved["label_mode"], saved["lr_scheduler_type"], saved["warmup_steps"], saved["weight_decay"]) == \
            ("paper", "linear", 0, 0.0)
        result = json.loads((run / "result.json").read_text())
        assert result["summary"]["selection"]["n"] == 4 and result["selection_data"].endswith("holdout.jsonl")
    report = json.loads((out / "results.json").read_text())["selection"]
    assert {report["on_test"]["cell_id"], report["on_heldout"]["cell_id"]} <= {"learning_rate=0.001", "learning_rate=0.003"}
    assert "chosen on the test rows (as the paper did)" in (out / "results.md").read_text()
