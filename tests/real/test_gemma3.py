"""Gemma-3-270M (base) end to end: the named model's conversion and turn template, the packed forward
under Gemma 3's sliding-window attention, anchors and views as ``inspect`` shows them, one training
step, and evaluation of a few NL-RX-SYNTH rows. Kept few: the conversion alone takes minutes on 2 cores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

GEMMA = "gemma-3-270m"


@pytest.fixture(scope="module")
def gemma_dir(real_cache) -> Path:
    from llm_jepa.realmodel import resolve_model_path

    return Path(resolve_model_path(GEMMA))


def test_the_named_model_converts_with_gemma_turns_and_stops_at_end_of_turn(gemma_dir, monkeypatch):
    from transformers import AutoTokenizer, GenerationConfig

    from llm_jepa import realmodel
    from llm_jepa.realmodel import GEMMA3_TURNS, SOURCE_FILE

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    assert tok.chat_template == GEMMA3_TURNS
    rendered = tok.apply_chat_template([{"role": "system", "content": "Convert."}, {"role": "user", "content": "dog"},
                                        {"role": "assistant", "content": "(dog)"}], tokenize=False)
    assert rendered == "<bos><start_of_turn>user\nConvert.\n\ndog<end_of_turn>\n<start_of_turn>model\n(dog)<end_of_turn>\n"
    stops = GenerationConfig.from_pretrained(gemma_dir).eos_token_id
    assert tok.convert_tokens_to_ids("<end_of_turn>") in stops and tok.eos_token_id in stops
    assert "chat_template" in json.loads((gemma_dir / SOURCE_FILE).read_text())
    monkeypatch.setattr(realmodel, "_convert", lambda *a: pytest.fail("converted a second time"))
    assert realmodel.resolve_model_path(GEMMA) == str(gemma_dir)


def _segments(tok) -> list[list[int]]:
    texts = ["lines containing the string 'dog' followed by a number, 3 or more times",
             "(dog)", "lines not having a vowel before the string 'truck' or a capital letter, twice at least"]
    return [tok(t)["input_ids"] for t in texts]


def _model(folder: Path, window: int | None):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    if window is not None:
        config.sliding_window = window
    return AutoModelForCausalLM.from_pretrained(folder, config=config, dtype=torch.float32,
                                                attn_implementation="sdpa").eval()


def test_packed_forward_equals_separate_forwards_under_sliding_window_attention(gemma_dir):
    """Three segments packed in one row, the sliding window shrunk to 8 tokens so that it cuts inside
    the longer segments: under either isolation every segment's hidden states equal its own forward's.
    The window matters here (the longest segment's states differ under Gemma's own 512-token window),
    so a packed mask that dropped the window (the explicit 4D mask did), or leaked across segments,
    fails. One model load for both isolations: the real tests are kept cheap."""
    from transformers import AutoTokenizer

    from llm_jepa.objective import forward_packed

    tok = AutoTokenizer.from_pretrained(gemma_dir)
    segs = _segments(tok)
    assert max(map(len, segs)) > 2 * 8
    ids = torch.tensor([[t for s in segs for t in s]])
    seg_ids = torch.tensor([[i for i, s in enumerate(segs) for _ in s]])
    pos = torch.tensor([[p for s in segs for p in range(len(s))]])
    batch = {"input_ids": ids, "position_ids": pos, "segment_ids": seg_ids}
    model = _model(gemma_dir, 8)
    assert "sliding_attention" in model.config.layer_types
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states[-1][0] for s in segs]
        for isolation in ("position_ids", "explicit"):
            packed = forward_packed(model, batch, isolation)[0][0]
            start = 0
            for s, want in zip(segs, alone, strict=True):
                # float32 kernels sum in another order for another length: up to 1.1e-4 of the states' RMS
                # (about 3.7; single values reach 66) was seen on one thread, beyond a fixed 2e-4. A dropped
                # window or a leak between segments moves them by the order of the RMS (below: max 24).
                tol = 1e-3 * want.pow(2).mean().sqrt().item()
                torch.testing.assert_close(packed[start : start + len(s)], want, atol=tol, rtol=0,
                                           msg=lambda m, iso=isolation: f"{iso}: {m}")
                start += len(s)
        del model
        wide = _model(gemma_dir, None)(input_ids=torch.tensor([segs[2]]), output_hidden_states=True).hidden_states[-1][0]
    assert (wide - alone[2]).abs().max() > 1.0  # the 8-token window changed what the long segment sees


def test_anchors_and_views_as_inspect_shows_them(synth, real_cache, tmp_path):
    """Gemma's turns in every segment: the Text view ends ``<|predictor_1|><end_of_turn>`` with its anchor
    on the predictor, the Code view's anchor is the answer's last token, the conversation's labels are
    the answer and its end of turn, and one batch's losses are finite."""
    from llm_jepa.config import load_config
    from llm_jepa.data import load_examples
    from llm_jepa.inspection import inspect_examples

    cfg = load_config(None, ["--model", GEMMA, "--data", str(synth[0]), "--output_dir", str(tmp_path / "i"),
                             "--k", "1", "--threads", "2"])
    report = inspect_examples(cfg, 2)
    examples = load_examples(synth[0], 2)
    for ex, shown in zip(examples, report["examples"], strict=True):
        (conversation,) = shown["conversation"]
        assert conversation["text"].startswith("<bos><start_of_turn>user\n" + ex.system + "\n\n" + ex.user)
        assert conversation["labelled_text"] == ex.assistant + "<end_of_turn>"
        source, target = shown["pairs"][0]["source"], shown["pairs"][0]["target"]
        assert source["anchor_token"] == "<|predictor_1|>"
        assert source["tokens"][source["anchor_index"] + 1] == "<end_of_turn>"
        assert source["text"].startswith("<bos><start_of_turn>user\n" + ex.user)
        assert target["text"].startswith("<bos><start_of_turn>model\n" + ex.assistant)
        assert target["tokens"][target["anchor_index"] + 1] == "<end_of_turn>"
        assert ex.assistant.endswith(target["anchor_token"].replace("\u2581", " ").strip()[-1:])
    assert math.isfinite(report["lm_loss"]) and math.isfinite(report["jepa_loss"])


def test_one_training_step_has_finite_losses(synth, real_cache, tmp_path):
    from llm_jepa.config import load_config
    from llm_jepa.train import train

    train(load_config(None, ["--model", GEMMA, "--data", str(synth[0]), "--output_dir", str(tmp_path / "run"),
                             "--max_steps", "1", "--per_device_train_batch_size", "2", "--limit", "4",
                             "--logging_steps", "1", "--save_strategy", "no", "--learning_rate", "1e-5",
                             "--k", "1", "--threads", "2", "--disable_tqdm", "true", "--report_to", "none"]))
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][0]
    assert math.isfinite(log["lm_loss"]) and math.isfinite(log["jepa_loss"]) and math.isfinite(log["loss"])
    assert log["lm_loss"] < 8  # a pretrained model, not random weights (ln 262k = 12.5)


def test_eval_of_a_few_synth_rows_records_how_each_generation_ended(synth, real_cache, tmp_path):
    from llm_jepa.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--model", GEMMA, "--data", str(synth[1]), "--output", str(out), "--limit", "3",
                 "--max-new-tokens", "8", "--batch-size", "3", "--no-similarity", "--threads", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 3 and {"exact", "contains", "stopped", "terminated"} <= set(summary["metrics"])
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    for p in preds:
        assert p["finish"]["stop"] in ("<end_of_turn>", "<eos>", None) and p["finish"]["tokens"] <= 8
        assert (p["finish"]["stop"] is None) == (p["finish"]["tokens"] == 8 and "<end_of_turn>" not in p["finish"]["raw"])
