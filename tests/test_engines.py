"""Mixed precision, gradient checkpointing and torch.compile with the packed views (CPU, one process)."""

import json
import time

import pytest
import torch

from llm_jepa.collator import PackingCollator
from llm_jepa.config import load_config
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig, compute_objective
from llm_jepa.train import train
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama, write_run_inputs

ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "truck") for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("engines")
    write_run_inputs(d, ROWS)
    return d


def _run(setup, name, *extra):
    out = setup / name
    args = ["--model", str(setup / "ckpt"), "--data", str(setup / "train.jsonl"), "--output_dir", str(out),
            "--max_steps", "3", "--per_device_train_batch_size", "3", "--logging_steps", "1", "--save_strategy", "no",
            "--disable_tqdm", "true", "--learning_rate", "1e-3", "--seed", "3", "--k", "2", *extra]
    train(load_config(None, args))
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"lm_loss"' in x]


@pytest.fixture(scope="module")
def fp32(setup):
    return _run(setup, "fp32")


def test_bf16_autocast_on_cpu_matches_fp32_to_bf16_precision():
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok)
    items = [ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": r})) for r in ROWS]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=64)(items)
    ref = compute_objective(model, batch, ObjectiveConfig())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = compute_objective(model, batch, ObjectiveConfig())
    assert low.lm_loss.item() != ref.lm_loss.item()  # autocast reached the packed forward (bf16 matmuls)
    low.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert low.lm_loss.item() == pytest.approx(ref.lm_loss.item(), rel=2e-2)
    assert low.jepa_loss.item() == pytest.approx(ref.jepa_loss.item(), abs=2e-2)


def test_bf16_with_gradient_checkpointing_trains_with_packed_views(setup, fp32):
    logs = _run(setup, "bf16", "--bf16", "true", "--gradient_checkpointing", "true")
    assert len(logs) == len(fp32) == 3
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in logs)
    assert logs[0]["lm_loss"] == pytest.approx(fp32[0]["lm_loss"], rel=2e-2)  # same step, bf16 rounding
    assert logs[0]["jepa_loss"] == pytest.approx(fp32[0]["jepa_loss"], abs=2e-2)
    assert logs[0]["lm_loss"] != fp32[0]["lm_loss"]  # autocast did run in bf16


def test_torch_compile_trains_with_packed_views_and_gives_the_eager_losses(setup, fp32):
    """``--torch_compile`` with the ``aot_eager`` backend (traced by dynamo and AOTAutograd; inductor's C++
    code generation is too slow for a CPU test). The LM head's selection hook stays in the graph."""
    pytest.importorskip("torch._dynamo")
    start = time.perf_counter()
    logs = _run(setup, "compiled", "--torch_compile", "true", "--torch_compile_backend", "aot_eager")
    if time.perf_counter() - start > 120:
        pytest.skip("torch.compile too slow on this machine")  # pragma: no cover
    assert len(logs) == 3
    for a, b in zip(fp32, logs, strict=True):
        assert b["lm_loss"] == pytest.approx(a["lm_loss"], rel=1e-4)
        assert b["jepa_loss"] == pytest.approx(a["jepa_loss"], rel=1e-4, abs=1e-5)
