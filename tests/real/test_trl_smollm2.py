"""A short TRL run on SmolLM2-135M-Instruct with STP: it trains, saves, and llm-jepa eval reads it."""

import json

import pytest

pytest.importorskip("trl", reason="TRL is not installed (pip install 'llm-jepa[trl]')")

from tests.real.conftest import NAME  # noqa: E402


def test_trl_run_with_stp_trains_saves_and_evaluates(synth, real_cache, tmp_path):
    from datasets import Dataset

    from llm_jepa.cli import main
    from llm_jepa.runs import load_run
    from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer

    rows = [json.loads(line) for line in synth[0].read_text().splitlines()[:4]]
    out = tmp_path / "trl-run"
    args = JepaSFTConfig(output_dir=str(out), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                         learning_rate=1e-4, save_strategy="no", report_to=[], max_length=256, disable_tqdm=True,
                         jepa_lambda=0.0, stp_lambda=0.02, assistant_only_loss=False)
    trainer = JepaSFTTrainer(model=NAME, args=args, train_dataset=Dataset.from_list([{"messages": r["messages"]}
                                                                                      for r in rows]))
    trainer.train()
    trainer.save_model()
    logs = [x for x in trainer.state.log_history if "loss" in x]
    assert len(logs) == 2 and all(0 < x["stp_loss"] < 2 and x["lm_loss"] < 5 for x in logs)
    run = load_run(str(out))
    assert run.config["stp_lambda"] == 0.02 and run.view.max_length == 256
    rc = main(["eval", "--model", str(out), "--data", str(synth[1]), "--output", str(tmp_path / "eval"), "--limit",
               "2", "--max-new-tokens", "8", "--batch-size", "2", "--threads", "2"])
    assert rc == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["n"] == 2 and "exact" in summary["metrics"]
