"""Templates that reject the system role (Gemma-2's raises "System role not supported"): a data set
with system messages still trains and evaluates, with the system folded into the first user turn."""

import json

from llm_jepa.config import load_config
from llm_jepa.data import load_examples
from llm_jepa.eval.generate import GenerationSettings
from llm_jepa.eval.runner import evaluate
from llm_jepa.train import train
from tests._factory import conv, write_checkpoint

ROWS = [conv(f"lines with the string '{w}'", f"(.*{w}.*)", "Convert") for w in ("dog", "truck", "ring", "lake")]


def test_gemma_style_template_trains_and_evaluates_with_a_system_message(tmp_path, monkeypatch):
    import llm_jepa.eval.runner as runner

    write_checkpoint(tmp_path / "ckpt", "gemma2")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"messages": r}) + "\n" for r in ROWS))
    out = tmp_path / "run"
    train(load_config(None, ["--model", str(tmp_path / "ckpt"), "--data", str(data), "--output_dir", str(out),
                             "--max_steps", "1", "--per_device_train_batch_size", "4", "--disable_tqdm", "true"]))
    prompts = []
    real = runner.generate
    monkeypatch.setattr(runner, "generate", lambda m, t, p, *a, **k: prompts.extend(p) or real(m, t, p, *a, **k))
    s = evaluate(str(out), data, task="regex", generation=GenerationSettings(max_new_tokens=2), quiet=True)
    assert s["n"] == 4 and s["similarity"]["all"] is not None
    assert prompts == [f"<bos><start_of_turn>user\nConvert\n\n{ex.user}<end_of_turn>\n<start_of_turn>model\n"
                       for ex in load_examples(data)]
