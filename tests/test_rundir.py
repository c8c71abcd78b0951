"""Run directories: the output lock (live holder named, dead holder detected), backups instead of
deletion, complete-checkpoint selection and the metrics log after a resume."""

import json
import os
import signal
import subprocess
import sys

import pytest

from llm_jepa.rundir import (
    OutputLock,
    OutputLockedError,
    move_aside,
    newest_complete_checkpoint,
    read_metrics,
    truncate_metrics,
)

_HOLD = ("import sys, time; from llm_jepa.rundir import OutputLock; lock = OutputLock(sys.argv[1], 'training').acquire(); "
         "print('held', flush=True); time.sleep(60)")


def _holder(directory):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(directory)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_killed_holder_is_stale(tmp_path):
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(OutputLockedError, match=rf"in use by another llm-jepa training \(pid {proc.pid} on "):
            OutputLock(tmp_path / "run").acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # dies without releasing: its lock file stays behind
        proc.wait()
    assert json.loads((tmp_path / "run" / ".llm-jepa.lock").read_text())["pid"] == proc.pid
    with OutputLock(tmp_path / "run", "evaluation") as lock:  # the kernel dropped the dead process's lock
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    OutputLock(tmp_path / "run").acquire().release()  # released: free again


def test_move_aside_keeps_everything_and_numbers_backups(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")
    with OutputLock(run):
        first = move_aside(run)
        assert first == tmp_path / "run.previous-1" and (first / "checkpoint-4").is_dir()
        assert [p.name for p in run.iterdir()] == [".llm-jepa.lock"]  # the lock stays with its holder
        assert move_aside(run) is None  # nothing left to move
        (run / "x").write_text("x")
        assert move_aside(run) == tmp_path / "run.previous-2"


def _checkpoint(run, step, complete=True):
    d = run / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w")
    if complete:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return d


def test_newest_complete_checkpoint_skips_half_written_ones(tmp_path):
    good = _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 10)
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text('{"global_st')  # cut by a full disk
    half = _checkpoint(tmp_path, 6, complete=False)  # killed before trainer_state.json
    (tmp_path / ".checkpoint-staging" / "checkpoint-12").mkdir(parents=True)  # never renamed into place
    ckpt, skipped = newest_complete_checkpoint(tmp_path)
    assert ckpt == good and skipped == [tmp_path / "checkpoint-10", half]
    assert newest_complete_checkpoint(tmp_path / "missing") == (None, [])


def test_truncate_metrics_drops_records_after_the_checkpoint_and_the_summary(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": s, "kind": "train", "loss": 1.0} for s in (1, 2, 3)] + [{"step": 3, "kind": "summary"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 4, "lo')  # cut by a kill
    assert truncate_metrics(path, 2) == 3
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_read_metrics_tells_steps_from_the_summary_in_old_logs(tmp_path):
    path = tmp_path / "metrics.jsonl"
    old = [{"step": 2, "loss": 1.0, "flops": 5.0}, {"step": 2, "eval_loss": 1.0},
           {"step": 2, "train_runtime": 3.0, "train_loss": 1.0}]  # written before records had a kind
    path.write_text("".join(json.dumps(r) + "\n" for r in old))
    assert read_metrics(path) == [old[0]]
    assert read_metrics(path, "summary") == [old[2]] and read_metrics(path, "eval") == [old[1]]


def test_move_aside_of_the_current_directory_names_its_sibling(tmp_path, monkeypatch):
    # red team: `train --output_dir . --overwrite` failed with "PosixPath('.') has an empty name"
    from pathlib import Path

    run = tmp_path / "run"
    run.mkdir()
    (run / "old.txt").write_text("old")
    monkeypatch.chdir(run)
    backup = move_aside(Path("."))
    assert backup == tmp_path / "run.previous-1" and (backup / "old.txt").read_text() == "old"
    assert list(run.iterdir()) == []
