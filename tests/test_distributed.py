"""Two CPU processes (gloo) under torchrun against one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests._factory import conv, write_run_inputs

pytestmark = pytest.mark.distributed
ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "truck", "ring", "lake")
        for n in range(1, 5)]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    write_run_inputs(d, ROWS)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(setup, out, nproc, per_device, *extra, env=None, check=True, launcher=("torchrun",)):
    args = ["--model", str(setup / "ckpt"), "--data", str(setup / "train.jsonl"), "--output_dir", str(out),
            "--max_steps", "6", "--per_device_train_batch_size", str(per_device), "--logging_steps", "1",
            "--save_steps", "2", "--learning_rate", "1e-3", "--seed", "7", "--alpha", "0.5", "--disable_tqdm", "true",
            "--k", "2", *extra]
    if nproc == 1:
        cmd = [sys.executable, "-m", "llm_jepa.cli", "train", *args]
    elif launcher[0] == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), "-m", "llm_jepa.cli", "train", *args]
    else:  # accelerate launch with one of configs/ (no --cpu: accelerate would start one process; llm-jepa
        # itself declares use_cpu on a machine without GPUs, so the processes form a gloo group)
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.path.join(REPO, launcher[1]),
               "--num_processes", str(nproc), "--mixed_precision", "no", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(_free_port()), *launcher[2:], "-m", "llm_jepa.cli", "train", *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "src"), REPO]),
                **(env or {})}
    proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=240, cwd=REPO)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _logs(out):
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"lm_loss"' in x]


def _assert_same_weights(a, b):
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.fixture(scope="module")
def reference(setup):
    out = setup / "one"
    _train(setup, out, 1, 4)
    return out


def test_two_processes_match_one_with_the_same_global_batch(setup, reference):
    two = setup / "two"
    _train(setup, two, 2, 2)
    la, lb = _logs(reference), _logs(two)
    assert len(la) == len(lb) == 6
    for a, b in zip(la, lb, strict=True):
        assert b["lm_loss"] == pytest.approx(a["lm_loss"], rel=1e-4)
        assert b["views_skipped"] in (0.0, 1.0)  # both ranks made the same loss-dropout decision
        assert b["views_skipped"] == a["views_skipped"]
        if "jepa_loss" in a:
            assert b["jepa_loss"] == pytest.approx(a["jepa_loss"], rel=1e-4)
    _assert_same_weights(reference, two)
    # rank 0 alone writes the run's files: one metrics line per logged step
    assert len((two / "metrics.jsonl").read_text().splitlines()) == len(la) + 1


def test_failing_rank_stops_the_run_keeps_checkpoints_and_resumes_on_one_process(setup, reference):
    out = setup / "crash"
    proc = _train(setup, out, 2, 2, "--callbacks", "tests._callbacks:CrashOnRank",
                  env={"LLM_JEPA_CRASH_RANK": "1", "LLM_JEPA_CRASH_STEP": "3"}, check=False)
    assert proc.returncode != 0
    assert "injected failure on rank 1" in proc.stderr
    assert (out / "checkpoint-2").is_dir() and not (out / "model.safetensors").exists()
    # nothing written before the failure is lost: the logged steps are on disk and in rank 0's output
    assert [m["step"] for m in _logs(out)][:2] == [1, 2]
    assert proc.stdout.count("{'loss'") >= 2
    _train(setup, out, 1, 4, "--resume", "true")  # the same global batch on one process
    _assert_same_weights(reference, out)


def test_accelerate_launch_ddp_same_dropout_decisions_on_every_rank_and_one_report(setup, reference):
    out = setup / "accelerate"
    proc = _train(setup, out, 2, 2, "--callbacks", "tests._callbacks:RecordViewDecisions",
                  launcher=("accelerate", "configs/accelerate_ddp.yaml"))
    d0, d1 = (json.loads((out / f"decisions-rank{r}.json").read_text()) for r in (0, 1))
    assert len(d0) >= 6 and d0 == d1  # (micro-batch index, views skipped) in the order each rank collated
    assert {skip for _, skip in d0} == {True, False}  # --alpha 0.5: both kinds of step occurred
    for a, b in zip(_logs(reference), _logs(out), strict=True):  # and the run is the 1-process run
        assert b["lm_loss"] == pytest.approx(a["lm_loss"], rel=1e-4)
        assert b["views_skipped"] == a["views_skipped"]
    _assert_same_weights(reference, out)
    # rank 0 alone reports: one line per logged step, one summary, no progress bars from other ranks
    text = proc.stdout + proc.stderr
    assert text.count("{'loss'") == 6
    assert proc.stdout.count('"train_runtime"') == 1
    assert text.count("Loading weights: 100%") == 1
    assert text.count("llm-jepa train: 2 processes (MULTI_CPU), global batch 4 = 2 per device x 2 x 1") == 1


@pytest.mark.parametrize("gather,n,says", [(True, 2, "gathered from all ranks"), (False, 2, "in-batch, this rank"),
                                           (True, 1, "in-batch, this rank")])
def test_banner_says_where_infonce_negatives_come_from(tmp_path, gather, n, says):
    from types import SimpleNamespace

    from llm_jepa.config import load_config
    from llm_jepa.train import run_banner

    cfg = load_config(None, ["--output_dir", str(tmp_path), "--distance", "infonce", "--infonce_gather", str(gather),
                             "--per_device_train_batch_size", "3", "--gradient_accumulation_steps", "2"])
    line = run_banner(cfg, SimpleNamespace(num_processes=n, distributed_type="DistributedType.MULTI_GPU"))
    assert f"global batch {3 * n * 2}" in line and says in line


@pytest.mark.parametrize("isolation", ["position_ids", "explicit"])
def test_fsdp2_sharded_objective_equals_the_unsharded_one(tmp_path, isolation):
    """FSDP2 (torch's fully_shard, 2 CPU processes, gloo): the LM head is sharded and resharded after the
    forward, so it must run inside the forward; losses and averaged gradients equal the unsharded model's."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), os.path.join(REPO, "tests", "_fsdp2_worker.py"), str(tmp_path), isolation]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "src"), REPO])}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        r = json.loads((tmp_path / f"fsdp2-rank{rank}.json").read_text())
        assert r["lm_head_sharded"] and r["params"] == 21
        assert "DTensor" in r["head_outside_forward"]  # the head called after the forward cannot run
        assert r["lm_loss"] == pytest.approx(r["ref_lm_loss"], abs=1e-5)
        assert r["jepa_loss"] == pytest.approx(r["ref_jepa_loss"], abs=1e-5)
        assert r["max_grad"] > 0.1 and r["max_grad_error"] < 1e-5, r["worst"]


def test_lora_with_loss_dropout_runs_under_ddp_without_unused_parameter_search(setup):
    """llm-jepa turns DDP's unused-parameter search off: LoRA adapters and the trainable predictor
    embeddings must still take part in steps whose views were dropped, or DDP would fail."""
    out = setup / "lora"
    _train(setup, out, 2, 2, "--lora", "true", "--max_steps", "4", "--save_steps", "100")
    assert {m["views_skipped"] for m in _logs(out)} == {0.0, 1.0}


def test_banner_warns_when_accelerate_ignored_the_requested_engine(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from llm_jepa.config import load_config
    from llm_jepa.train import run_banner

    cfg = load_config(None, ["--output_dir", str(tmp_path)])
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert "asks for FSDP" in run_banner(cfg, SimpleNamespace(num_processes=2, distributed_type="MULTI_CPU"))
    assert "WARNING" not in run_banner(cfg, SimpleNamespace(num_processes=2, distributed_type="DistributedType.FSDP"))
