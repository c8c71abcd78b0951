"""A model or dataset name that cannot be loaded offline fails in seconds with one line (issue 30).

Before, transformers and datasets retried the hub for ~50 s and the command ended in an 83-91 line
traceback. The hub is made unreachable deterministically (HF_ENDPOINT on a closed local port), so
these tests mean the same on a machine with network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_jepa import hub
from llm_jepa.cli import main

NO_HUB = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", NO_HUB)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    hub._probe.cache_clear()
    yield tmp_path
    hub._probe.cache_clear()


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n')
    return path


def _one_line_error(capsys, command: list[str], limit_s: float = 15.0) -> str:
    capsys.readouterr()  # what the test's own set-up printed
    start = time.monotonic()
    rc = main(command)
    took = time.monotonic() - start
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert took < limit_s, f"{took:.1f} s: {err}"
    assert len(err.splitlines()) == 1, err
    return err


def test_looks_local():
    assert hub.looks_local("./runs/x") and hub.looks_local("/abs/x") and hub.looks_local("~/x")
    assert hub.looks_local("a/b/c") and hub.looks_local("data.jsonl") and hub.looks_local("model.gguf")
    assert not hub.looks_local("gpt2") and not hub.looks_local("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_first_component_that_exists_here_makes_a_path_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not hub.looks_local("runs/does-not-exist")
    (tmp_path / "runs").mkdir()
    assert hub.looks_local("runs/does-not-exist")


def test_mistyped_local_run_fails_in_a_second(no_hub, capsys, data_file):
    (no_hub / "runs").mkdir()
    err = _one_line_error(capsys, ["eval", "--model", "runs/does-not-exist", "--data", str(data_file), "--task", "regex",
                                   "--output", str(no_hub / "e")], limit_s=10.0)
    assert "runs/does-not-exist: no such model directory (--model)" in err
    assert not (no_hub / "e").exists()


@pytest.mark.parametrize("model", ["no-such-model-4f2a", "llm-jepa-tests/no-such-model"])
def test_hub_name_without_network_is_one_line_naming_offline_choices(no_hub, capsys, data_file, model):
    out = no_hub / "run"
    err = _one_line_error(capsys, ["train", "--model", model, "--data", str(data_file), "--output_dir", str(out)])
    assert f"{model}: not a local folder" in err and "127.0.0.1:9" in err and "not reachable" in err
    assert "llm-jepa model path" in err and "local checkpoint folder" in err
    assert not any(out.glob("*")) if out.exists() else True


def test_hub_name_of_a_packaged_model_names_its_twin(no_hub, capsys):
    err = _one_line_error(capsys, ["demo", "--model", "HuggingFaceTB/SmolLM2-135M-Instruct",
                                   "--output", str(no_hub / "demo")])
    assert "--model smollm2-135m-instruct" in err and "llm-jepa model path smollm2-135m-instruct" in err
    assert not (no_hub / "demo").exists()


def test_offline_mode_is_named(no_hub, monkeypatch, capsys, data_file):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = _one_line_error(capsys, ["embed", "--model", "org/absent", "--data", str(data_file), "--kind", "text",
                                   "--output", str(no_hub / "x.npy")], limit_s=10.0)
    assert "offline mode is set (HF_HUB_OFFLINE)" in err


def test_bare_data_name_without_network(no_hub, capsys, tmp_path):
    from llm_jepa.toy.tiny import build_checkpoint

    model = build_checkpoint(tmp_path / "m", ["hello world", "a b c"] * 10, size="micro", vocab_size=300)
    err = _one_line_error(capsys, ["train", "--model", str(model), "--data", "x", "--output_dir", str(tmp_path / "o")])
    assert "x: not a local file or folder" in err and "(--data)" in err and "JSONL file" in err


def test_resolve_model_path_decides_once(no_hub):
    with pytest.raises(hub.UnavailableError, match="not reachable"):
        from llm_jepa.realmodel import resolve_model_path

        resolve_model_path("org/absent")


def test_whole_command_offline_no_traceback(tmp_path):
    """The installed entry point, as a user runs it: one stderr line, no traceback, nothing written."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "llm_jepa.cli", "demo", "--model",
                           "HuggingFaceTB/SmolLM2-135M-Instruct", "--output", str(tmp_path / "d")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert time.monotonic() - start < 60
    assert not (tmp_path / "d").exists()
