"""What a run records stays true (red-team round, fixc): the resume data hash covers every trained
field, a finished run resumed keeps its summary, non-finite term options are refused before
anything is written, a demo too small for its batch says so in its own flags, a checkpoint reads
as the run it belongs to, and a model file (not folder) is one line."""

import hashlib
import json
import shutil

import pytest

from llm_jepa.cli import main
from llm_jepa.config import ConfigError, load_config
from llm_jepa.data import load_examples
from llm_jepa.runs import load_run, read_run_config
from llm_jepa.stp import StpConfig
from llm_jepa.train import RUN_FACTS, _changed_facts, data_sha256, run_facts, train
from tests._factory import conv, write_rows
from tests.test_train import ROWS, _cfg, ckpt  # noqa: F401 (fixture)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _texts(words):
    return [{"text": f"a short document about the {w}, which is long enough to train on"} for w in words]


# ---- 1. the data hash covers document and prompt_turns -------------------------------------------
def test_text_rows_with_other_documents_hash_differently(tmp_path):
    a = load_examples(_jsonl(tmp_path / "a.jsonl", _texts(["dog", "cat"])))
    b = load_examples(_jsonl(tmp_path / "b.jsonl", _texts(["owl", "elk"])))
    assert data_sha256(a) != data_sha256(b)  # before: every text file of two rows hashed the same


def test_prompt_completion_rows_hash_apart_from_the_same_messages(tmp_path):
    row = conv("lines with 'dog'", "(.*dog.*)", system=None)
    pc = load_examples(_jsonl(tmp_path / "pc.jsonl", [{"prompt": row[:1], "completion": row[1:]}]))
    msgs = load_examples(write_rows(tmp_path / "m.jsonl", [row]))
    assert pc[0].messages == msgs[0].messages and pc[0].prompt_turns == 1
    assert data_sha256(pc) != data_sha256(msgs)  # the prompt is never labelled: another training


def test_messages_rows_keep_the_hash_older_runs_recorded(tmp_path):
    examples = load_examples(write_rows(tmp_path / "m.jsonl", ROWS))
    h = hashlib.sha256()  # the formula of the records written before this fix
    for ex in examples:
        h.update(json.dumps([ex.messages, ex.text, ex.code, list(ex.paraphrases)], sort_keys=True).encode() + b"\n")
    assert data_sha256(examples) == h.hexdigest()


def test_an_old_record_of_a_text_run_still_resumes_and_a_new_one_is_compared(tmp_path):
    cfg = load_config(None, ["--output_dir", str(tmp_path / "o"), "--regular", "true"])
    now = load_examples(_jsonl(tmp_path / "a.jsonl", _texts(["dog", "cat"])))
    other = load_examples(_jsonl(tmp_path / "b.jsonl", _texts(["owl", "elk"])))
    facts = run_facts(cfg, now, 1)
    # a record written before: the legacy hash, which did not see the documents: not a change
    (tmp_path / RUN_FACTS).write_text(json.dumps({"data_sha256": data_sha256(other, legacy=True),
                                                  "global_train_batch": facts["global_train_batch"]}))
    assert _changed_facts(tmp_path, facts) == {}
    # a record of today's: the other documents are a change
    (tmp_path / RUN_FACTS).write_text(json.dumps({k: v for k, v in run_facts(cfg, other, 1).items()
                                                  if not k.startswith("_")}))
    assert list(_changed_facts(tmp_path, facts)) == ["training rows (content hash)"]


def test_resume_refuses_a_text_row_file_replaced_by_other_documents(tmp_path, ckpt):  # noqa: F811
    rows = _jsonl(tmp_path / "train.jsonl", _texts(["dog", "cat", "owl", "elk"]))
    out = tmp_path / "run"
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2", "--regular", "true"))
    assert "_legacy_data_sha256" not in json.loads((out / RUN_FACTS).read_text())  # in memory only
    _jsonl(rows, _texts(["ant", "bee", "cow", "hen"]))
    with pytest.raises(ValueError, match=r"training rows \(content hash\)"):
        train(_cfg(ckpt, rows, out, "--max_steps", "4", "--save_steps", "2", "--regular", "true", "--resume", "true"))


# ---- 2. and 5. a finished k=1 run: resumed, and its checkpoint evaluated ------------------------------
@pytest.fixture(scope="module")
def finished_k1(tmp_path_factory, ckpt):  # noqa: F811
    """A 2-step k=1 run with its checkpoint at step 2, logging only its summary (logging_steps > max_steps)."""
    root = tmp_path_factory.mktemp("finished")
    rows = write_rows(root / "train.jsonl", ROWS)
    out = root / "run"
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2", "--logging_steps", "5", "--k", "1"))
    return out, rows


def test_resuming_a_finished_run_keeps_its_results_and_log(finished_k1, ckpt, tmp_path):  # noqa: F811
    run, rows = finished_k1
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / ".llm-jepa.lock").unlink(missing_ok=True)
    results, log = (out / "train_results.json").read_text(), (out / "metrics.jsonl").read_text()
    assert {"train_loss", "train_runtime"} <= set(json.loads(results))
    assert '"kind": "summary"' in log
    (out / "model.safetensors").unlink()  # the final save that a resume adds
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2", "--logging_steps", "5", "--k", "1",
               "--resume", "true"))
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "train_results.json").read_text()) == json.loads(results)
    assert (out / "metrics.jsonl").read_text() == log  # before: cut to nothing


def test_results_come_from_the_summary_when_train_results_json_is_missing(finished_k1, ckpt, tmp_path):  # noqa: F811
    run, rows = finished_k1
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / ".llm-jepa.lock").unlink(missing_ok=True)
    before = json.loads((out / "train_results.json").read_text())
    (out / "train_results.json").unlink()  # stopped after the Trainer's summary, before the file
    train(_cfg(ckpt, rows, out, "--max_steps", "2", "--save_steps", "2", "--logging_steps", "5", "--k", "1",
               "--resume", "true"))
    after = json.loads((out / "train_results.json").read_text())
    assert {k: after[k] for k in ("train_loss", "train_runtime")} == {
        k: before[k] for k in ("train_loss", "train_runtime")}


def test_eval_of_a_checkpoint_uses_the_runs_settings(finished_k1, tmp_path):
    run, rows = finished_k1
    checkpoint = run / "checkpoint-2"
    assert (checkpoint / "llm_jepa_config.yaml").is_file()  # written as the checkpoint was saved
    assert main(["eval", "--model", str(checkpoint), "--data", str(rows), "--output", str(tmp_path / "e"),
                 "--limit", "2", "--max-new-tokens", "1", "--task", "regex"]) == 0
    saved = json.loads((tmp_path / "e" / "eval_run.json").read_text())["run_settings"]
    assert saved["predictors"] == 1  # before: 0, the defaults


def test_a_checkpoint_saved_without_its_config_reads_the_runs(finished_k1, tmp_path):
    run, _ = finished_k1
    out = tmp_path / "run"
    shutil.copytree(run, out)
    (out / "checkpoint-2" / "llm_jepa_config.yaml").unlink()  # as checkpoints were saved before
    assert load_run(out / "checkpoint-2", weights=False).view.predictors == 1
    # resumed with changed options at step 2: the options before are the checkpoint's
    earlier = (out / "llm_jepa_config.yaml").read_text().replace("predictors: 1", "predictors: 3")
    (out / "llm_jepa_config.before-step-2.yaml").write_text(earlier)
    config, source = read_run_config(out / "checkpoint-2")
    assert (config["predictors"], source.name) == (3, "llm_jepa_config.before-step-2.yaml")


# ---- 3. non-finite term options -------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--stp_lambda", "inf"), ("--stp_lambda", "nan"), ("--stp_lambda", "-1"),
                                        ("--vicreg_weight", "inf"), ("--sigreg_weight", "nan")])
def test_non_finite_or_negative_term_weights_are_refused(flag, value, tmp_path):
    with pytest.raises(ConfigError, match=flag.removeprefix("--")):
        load_config(None, ["--output_dir", str(tmp_path / "o"), flag, value])


def test_the_cli_refuses_an_infinite_stp_lambda_before_writing(ckpt, tmp_path, capsys):  # noqa: F811
    data = write_rows(tmp_path / "train.jsonl", ROWS)
    out = tmp_path / "run"
    assert main(["train", "--model", str(ckpt), "--data", str(data), "--output_dir", str(out),
                 "--stp_lambda", "inf", "--max_steps", "1"]) != 0
    assert "stp_lambda must be finite" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), -0.5])
def test_stp_config_refuses_a_weight_that_is_not_finite_and_non_negative(weight):
    with pytest.raises(ValueError, match="stp_lambda must be finite and >= 0"):
        StpConfig(weight=weight)


# ---- 4. a demo too small for its batch ------------------------------------------------------------
def test_demo_with_fewer_rows_than_a_batch_is_refused_in_its_own_flags_before_writing(tmp_path, capsys):
    out = tmp_path / "dm2"
    assert main(["demo", "--output", str(out), "--size", "micro", "--n-train", "8", "--steps", "1"]) != 0
    err = capsys.readouterr().err
    assert "--n-train 8" in err and "--batch-size 32" in err and "per_device_train_batch_size" not in err
    assert not out.exists()  # so that the corrected command is no 'other demo'


def test_demo_counts_the_rows_of_its_data_file(tmp_path):
    from llm_jepa.demo.run import DemoConfig, run_demo

    data = write_rows(tmp_path / "train.jsonl", ROWS[:6])
    test = write_rows(tmp_path / "test.jsonl", ROWS[:2])
    out = tmp_path / "dm"
    with pytest.raises(ValueError, match=r"holds 6\): 6 training row\(s\) make no whole batch of --batch-size 8"):
        run_demo(DemoConfig(output=str(out), data=str(data), test_data=str(test), batch_size=8, n_train=100))
    assert not out.exists()


# ---- 6. a model file instead of its folder --------------------------------------------------------
def test_a_model_file_is_one_line_naming_its_folder(ckpt, tmp_path, capsys):  # noqa: F811
    from llm_jepa.modeling import check_model_path, load_tokenizer

    weights = next(ckpt.glob("*.safetensors"))
    with pytest.raises(ValueError, match=rf"a file, not a model folder .*here {ckpt}"):
        check_model_path(weights)
    with pytest.raises(ValueError, match="a file, not a model folder"):
        load_tokenizer(str(weights))
    data = write_rows(tmp_path / "d.jsonl", ROWS[:2])
    assert main(["eval", "--model", str(weights), "--data", str(data), "--output", str(tmp_path / "e"),
                 "--task", "regex"]) != 0
    err = capsys.readouterr().err
    assert "a file, not a model folder" in err and "Traceback" not in err
