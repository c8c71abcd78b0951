"""The one run record (issue 25 section 2) and the folder defects fixed through it (issues 27, 30):
locks that leave nothing behind and keep --overwrite away from running runs, moving aside that
fails whole, inputs inside the folder, and train checking everything before it touches a folder."""

import errno
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_jepa.cli import main
from llm_jepa.runrecord import (
    CannotMoveAsideError,
    OutputLock,
    OutputLockedError,
    changes,
    describe,
    move_aside,
    write_json,
)
from llm_jepa.train import train
from tests._factory import conv, write_rows
from tests.test_train import _cfg, ckpt, data  # noqa: F401 (fixtures)


def _train_cli(ckpt, data, out, *extra):  # noqa: F811
    return main(["train", "--model", str(ckpt), "--data", str(data), "--output_dir", str(out), "--max_steps", "2",
                 "--per_device_train_batch_size", "4", "--disable_tqdm", "true", *extra])


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ---- the module ----------------------------------------------------------------------------------

def test_changes_name_each_setting_with_both_values():
    saved, now = {"steps": 400, "seed": 1, "data": "/a"}, {"steps": 60, "seed": 1, "n_test": 10}
    changed = changes(saved, now)
    assert changed == {"data": ("/a", "<not set>"), "n_test": ("<not set>", 10), "steps": (400, 60)}
    assert describe(changed) == "data '/a' -> <not set>, n_test <not set> -> 10, steps 400 -> 60"
    assert changes(saved, now, ["seed"]) == {}


def test_write_json_replaces_the_file_whole(tmp_path, monkeypatch):
    path = write_json(tmp_path / "r.json", {"a": 1})
    monkeypatch.setattr(json, "dumps", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}


def test_a_released_lock_leaves_no_lock_file_and_no_folder_it_made(tmp_path):
    # issue 30: a failed train left a folder holding only .llm-jepa.lock; every finished run kept one
    with OutputLock(tmp_path / "new" / "run"):
        assert (tmp_path / "new" / "run" / ".llm-jepa.lock").is_file()
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with OutputLock(tmp_path / "kept"):
        (tmp_path / "kept" / "out.txt").write_text("x")
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["out.txt"]
    OutputLock(tmp_path / "kept").acquire().release()  # free again


def test_move_aside_refuses_while_a_run_below_holds_a_lock(tmp_path):
    # issue 27: train --overwrite moved 'par' aside while another run trained into par/a, which died
    (tmp_path / "par").mkdir()
    (tmp_path / "par" / "x.txt").write_text("x")
    with OutputLock(tmp_path / "par" / "a", "training"):
        with pytest.raises(OutputLockedError, match=r"par cannot be moved aside: .*par/a \(training \(pid"):
            move_aside(tmp_path / "par")
        assert (tmp_path / "par" / "x.txt").is_file() and not (tmp_path / "par.previous-1").exists()
    assert move_aside(tmp_path / "par") == tmp_path / "par.previous-1"


def test_a_move_across_file_systems_is_one_line_and_moves_nothing(tmp_path, monkeypatch):
    # issue 27: --overwrite of a mount point gave an EXDEV traceback and left an empty .previous-1
    run = tmp_path / "run"
    run.mkdir()
    for name in ("a.txt", "b.txt"):
        (run / name).write_text(name)
    rename = Path.rename

    def cross_device(self, target):
        if self.name == "b.txt":
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", cross_device)
    with pytest.raises(CannotMoveAsideError, match="another file system .* nothing was moved"):
        move_aside(run)
    assert sorted(p.name for p in run.iterdir()) == ["a.txt", "b.txt"] and not (tmp_path / "run.previous-1").exists()


# ---- train through it ----------------------------------------------------------------------------

def test_train_overwrite_refuses_a_folder_below_which_a_run_is_locked(ckpt, data, tmp_path, capsys):  # noqa: F811
    par = tmp_path / "par"
    (par / "a").mkdir(parents=True)
    (par / "a" / "metrics.jsonl").write_text("")
    with OutputLock(par / "a", "training"):
        code = _train_cli(ckpt, data, par, "--overwrite", "true")
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and "cannot be moved aside" in err and "par/a" in err
        assert (par / "a" / "metrics.jsonl").is_file() and not (tmp_path / "par.previous-1").exists()


def test_train_overwrite_of_a_folder_holding_its_own_model_is_refused(ckpt, data, tmp_path, capsys):  # noqa: F811
    # issue 27: train --model D --output_dir D --overwrite moved the input model aside, then failed
    d = tmp_path / "D"
    train(_cfg(ckpt, data, d, "--max_steps", "2"))
    before = _tree(d)
    code = _train_cli(d, data, d, "--overwrite", "true")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "--overwrite would move the run's own input aside (--model" in err
    assert _tree(d) == before and not (tmp_path / "D.previous-1").exists()


def test_an_empty_output_dir_is_refused(ckpt, data, tmp_path, monkeypatch, capsys):  # noqa: F811
    # issue 27: --output_dir "" trained into the current directory
    monkeypatch.chdir(tmp_path)
    code = _train_cli(ckpt, data, "")
    assert code == 2 and "--output_dir is empty" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_file_too_short_for_one_batch_fails_before_the_folder_exists(ckpt, tmp_path, capsys):  # noqa: F811
    # issue 27: 1 row with --dataloader_drop_last failed after setup and left a folder a rerun refused
    one = write_rows(tmp_path / "one.jsonl", [conv()])
    code = _train_cli(ckpt, one, tmp_path / "run", "--dataloader_drop_last", "true")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "1 training row(s) make no whole batch of 4" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("rows,trains", [(20, "one short step of 20 rows per epoch"), (3, "no step at all")])
def test_the_paper_protocol_on_fewer_rows_than_its_global_batch_fails_before_the_folder_exists(
        ckpt, tmp_path, capsys, rows, trains):  # noqa: F811
    """--protocol paper (global batch 128 = 4 per device x 32 accumulation, drop_last) once trained one
    short step of 20 rows per epoch on 20 rows: the check counted the per-device batch only."""
    few = write_rows(tmp_path / "few.jsonl", [conv(f"q{i}", f"a{i}") for i in range(rows)])
    code = main(["train", "--protocol", "paper", "--model", str(ckpt), "--data", str(few), "--output_dir",
                 str(tmp_path / "run"), "--bf16", "false", "--max_length", "64", "--disable_tqdm", "true"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"{rows} training row(s) make no whole batch of 128" in err
    assert "--gradient_accumulation_steps 32" in err and trains in err and "give at least 128 rows" in err
    assert not (tmp_path / "run").exists()


def test_a_tokenizer_with_no_pad_and_no_eos_fails_before_the_folder_exists(ckpt, data, tmp_path, capsys):  # noqa: F811
    # issue 27: a TypeError traceback after setup, and a folder that a rerun refused
    from transformers import AutoTokenizer

    bare = tmp_path / "bare"
    import shutil

    shutil.copytree(ckpt, bare)
    tok = AutoTokenizer.from_pretrained(bare)
    tok.pad_token = tok.eos_token = None
    tok.save_pretrained(bare)
    code = _train_cli(bare, data, tmp_path / "run")
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "neither a pad token nor an end-of-sequence token" in err
    assert not (tmp_path / "run").exists()


def test_a_failed_or_finished_run_leaves_no_lock_file(ckpt, data, tmp_path, monkeypatch):  # noqa: F811
    from tests.test_train_safety import _poison_step

    train(_cfg(ckpt, data, tmp_path / "done", "--max_steps", "2"))
    assert not (tmp_path / "done" / ".llm-jepa.lock").exists()
    _poison_step(monkeypatch, 1)
    with pytest.raises(ValueError, match="NaN"):
        train(_cfg(ckpt, data, tmp_path / "failed"))
    assert not (tmp_path / "failed" / ".llm-jepa.lock").exists()


def test_resuming_a_checkpoint_at_max_steps_trains_nothing_and_saves_it(ckpt, data, tmp_path, capsys):  # noqa: F811
    # issue 27: the run trained step 5 of 4, wrote checkpoint-5 and replaced the final model
    out = tmp_path / "run"
    train(_cfg(ckpt, data, out))  # checkpoints at 2 and 4 (= max_steps)
    for name in ("model.safetensors", "train_results.json"):
        (out / name).unlink()  # killed after its last checkpoint, before the final save
    capsys.readouterr()
    train(_cfg(ckpt, data, out, "--resume", "true"))
    assert "checkpoint-4 is at the run's last step" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["kind"]) for r in records] == [(1, "train"), (2, "train"), (3, "train"), (4, "train"),
                                                         (4, "summary")]  # the finished run's log is kept whole
    final, last = load_file(out / "model.safetensors"), load_file(out / "checkpoint-4" / "model.safetensors")
    for k in last:
        torch.testing.assert_close(final[k], last[k], msg=k)
    # what its training recorded, from the log's summary (train_results.json was lost with the final save)
    assert json.loads((out / "train_results.json").read_text())["train_loss"] == records[-1]["train_loss"]


def test_resume_with_another_optimizer_is_refused_before_anything_changes(ckpt, data, tmp_path):  # noqa: F811
    # issue 27: --optim sgd failed with a KeyError after the config was rewritten and the metrics cut
    out = tmp_path / "run"
    train(_cfg(ckpt, data, out, "--max_steps", "3"))
    before = _tree(out)
    for extra in ([], ["--resume_allow_changes", "true"]):
        with pytest.raises(ValueError, match=r"another optimizer \(optim 'adamw[a-z_]*' -> 'sgd'\)"):
            train(_cfg(ckpt, data, out, "--max_steps", "6", "--resume", "true", "--optim", "sgd", *extra))
        assert _tree(out) == before


def test_a_jepa_trainer_built_from_python_writes_whole_checkpoints_only(ckpt, data, tmp_path, monkeypatch):  # noqa: F811
    # issue 25 section 5: only train()'s dynamically built subclass had atomic checkpoints
    from llm_jepa import trainer as trainer_mod
    from llm_jepa.train import TokenizedDataset, build_components, check_inputs

    cfg = _cfg(ckpt, data, tmp_path / "py")
    parts = build_components(cfg)
    trainer = trainer_mod.JepaTrainer(model=parts["model"], args=cfg, data_collator=parts["collator"],
                                      train_dataset=TokenizedDataset(check_inputs(cfg)["train"], parts["builder"]),
                                      processing_class=parts["tokenizer"], objective=parts["objective"])
    original = trainer_mod.JepaTrainer._save_optimizer_and_scheduler

    def full_disk(self, output_dir):
        if self.state.global_step == 4:
            raise OSError(28, "No space left on device")
        return original(self, output_dir)

    monkeypatch.setattr(trainer_mod.JepaTrainer, "_save_optimizer_and_scheduler", full_disk)
    with pytest.raises(OSError, match="No space left"):
        trainer.train()
    assert sorted(p.name for p in (tmp_path / "py").glob("checkpoint-*")) == ["checkpoint-2"]


def test_changes_name_the_entries_of_a_nested_record_that_differ():
    # a refused rerun must name the setting that differs, not print two long, cut dicts
    from llm_jepa.runrecord import changes, describe

    saved = {"task": "regex", "run_settings": {"view_system": "none", "max_length": 512, "dtype": "auto"}}
    now = {"task": "regex", "run_settings": {"view_system": "empty", "max_length": 512, "dtype": "auto"}}
    assert changes(saved, now) == {"run_settings.view_system": ("none", "empty")}
    assert "run_settings.view_system 'none' -> 'empty'" in describe(changes(saved, now))
    assert changes({"a": 1}, {"a": {"b": 1}}) == {"a": (1, {"b": 1})}
