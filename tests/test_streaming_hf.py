"""--streaming with a Hugging Face dataset (a save_to_disk folder, a folder of JSON files): rows read
and tokenized in the data loader train what the in-memory run of the same rows in the same order
trains, a resumed stream continues where it stopped, and a bad row met in the stream is named."""

import json

import pytest
import torch
from safetensors.torch import load_file

from llm_jepa.config import load_config
from llm_jepa.data import DataError, load_examples
from llm_jepa.lazydata import StreamedExamples
from llm_jepa.train import train
from tests._factory import conv, write_checkpoint
from tests.test_train import train_killed_after_step_3

datasets = pytest.importorskip("datasets")

ROWS = [{"messages": conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}")}
        for w in ("dog", "truck", "ring", "lake") for n in range(1, 5)]
BAD = {"messages": [{"role": "user", "content": "no answer"}, {"role": "user", "content": "still none"}]}


def _save(rows, path):
    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def _json_folder(rows, path):
    path.mkdir()
    (path / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    write_checkpoint(d / "ckpt")
    return d / "ckpt"


def _cfg(model, data, out, *extra):
    return load_config(None, ["--model", str(model), "--data", str(data), "--output_dir", str(out),
                              "--max_steps", "4", "--per_device_train_batch_size", "4", "--save_steps", "2",
                              "--disable_tqdm", "true", "--learning_rate", "1e-3", "--seed", "9", "--alpha", "0.3",
                              "--stp_lambda", "0.1", "--k", "2", "--report_to", "none",
                              "--train_sampling_strategy", "sequential", "--loss_dropout", "0.5", *extra])  # seed 9: steps 1-2 drop views, 3-4 keep them


def _weights(out):
    return load_file(out / "model.safetensors")


def test_streamed_rows_are_the_loaded_rows(tmp_path):
    saved = _save(ROWS, tmp_path / "saved")
    assert list(StreamedExamples(str(saved))) == load_examples(saved)  # sources too: (NAME[train], row)
    stream = StreamedExamples(str(saved), limit=6)
    stream.start = 4  # a resumed stream: the next iteration only
    assert [ex.source[1] for ex in stream] == [4, 5] and len(list(stream)) == 6


def _parquet_folder(rows, path):
    path.mkdir()
    datasets.Dataset.from_list(rows).to_parquet(str(path / "part.parquet"))
    return path


@pytest.mark.parametrize("make", [_save, _json_folder, _parquet_folder], ids=["save_to_disk", "json_folder", "parquet"])
def test_streamed_run_trains_the_in_memory_run_and_resumes(model, tmp_path, monkeypatch, make):

    data = make(ROWS, tmp_path / "data")
    eager, streamed, cut = tmp_path / "eager", tmp_path / "streamed", tmp_path / "cut"
    train(_cfg(model, data, eager))
    train(_cfg(model, data, streamed, "--streaming", "true"))
    a, b = _weights(eager), _weights(streamed)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert "data_stream" in json.loads((streamed / "llm_jepa_run.json").read_text())
    train_killed_after_step_3(_cfg(model, data, cut, "--streaming", "true"), monkeypatch)
    read = []
    original = StreamedExamples.__iter__

    def counting_iter(self):
        for ex in original(self):
            read.append(ex.source[1])
            yield ex

    monkeypatch.setattr(StreamedExamples, "__iter__", counting_iter)
    train(_cfg(model, data, cut, "--streaming", "true", "--resume", "true"))
    c = _weights(cut)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=1e-5, msg=k)
    assert read[0] == 0 and 8 in read and not set(range(1, 8)) & set(read[1:])  # row 0: the up-front check


def test_a_bad_row_met_in_the_stream_is_named_before_its_step(model, tmp_path):
    data = _save(ROWS[:9] + [BAD] + ROWS[10:], tmp_path / "data")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"{data}\[train\]:9: field 'messages': expected at least one 'assistant'"):
        train(_cfg(model, data, out, "--streaming", "true", "--save_steps", "1"))
    # row 9 is in step 3's batch: step 1 was trained and saved, step 3 never ran (the loader reads a
    # batch ahead, so the error can come during step 2, before its optimizer step)
    done = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert done and done[0] == 1 and max(done) < 3 and not (out / "model.safetensors").exists()


def test_a_bad_first_row_fails_before_anything_is_written(model, tmp_path):
    data = _save([BAD] + ROWS, tmp_path / "data")
    with pytest.raises(DataError, match=rf"{data}\[train\]:0: field 'messages'"):
        train(_cfg(model, data, tmp_path / "out", "--streaming", "true"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("extra, message", [(["--max_steps", "-1", "--num_train_epochs", "1"], "give --max_steps"),
                                            (["--train_rows", "4"], "--train_rows draw from all rows"),
                                            (["--train_sampling_strategy", "random"], "strategy random cannot apply"),
                                            (["--dataloader_num_workers", "2", "--loss_dropout", "0", "--stp_lambda", "0"],
                                             "one data loader worker")])
def test_what_a_stream_cannot_do_is_refused_up_front(model, tmp_path, extra, message):
    data = _save(ROWS, tmp_path / "data")
    with pytest.raises(ValueError, match=message):
        train(_cfg(model, data, tmp_path / "out", "--streaming", "true", *extra))
    assert not (tmp_path / "out").exists()


def test_the_trl_trainer_refuses_a_stream_and_names_the_cli_way(tmp_path):
    pytest.importorskip("trl")
    from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer
    from tests._factory import tiny_llama
    from tests.test_trl import MULTI, _args, _tok

    stream = datasets.Dataset.from_list(MULTI).to_iterable_dataset()
    with pytest.raises(ValueError, match=r"IterableDataset\) train dataset.*llm-jepa train --data DATASET --streaming"):
        JepaSFTTrainer(model=tiny_llama(_tok()), args=_args(JepaSFTConfig, tmp_path, MULTI, stp_lambda=0.1),
                       train_dataset=stream, processing_class=_tok())


@pytest.mark.distributed
def test_two_processes_stream_the_global_batches_of_one(model, tmp_path):
    """Every process reads the stream and accelerate gives each its part of every global batch: two
    processes of batch 2 train the weights of one process of batch 4."""
    import os
    import subprocess
    import sys

    from tests.test_distributed import REPO, _free_port

    data = _save(ROWS, tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([os.path.join(REPO, "src"), REPO])}

    def run(out, nproc, per_device):
        args = ["train", "--model", str(model), "--data", str(data), "--output_dir", str(out), "--streaming", "true",
                "--max_steps", "3", "--per_device_train_batch_size", str(per_device), "--save_strategy", "no",
                "--learning_rate", "1e-3", "--seed", "7", "--alpha", "0.5", "--stp_lambda", "0.1", "--k", "2",
                "--disable_tqdm", "true", "--report_to", "none", "--train_sampling_strategy", "sequential"]
        launch = (["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
                   "--master_port", str(_free_port())] if nproc > 1 else [])
        proc = subprocess.run([sys.executable, *launch, "-m", "llm_jepa.cli", *args], env=env, capture_output=True,
                              text=True, timeout=240, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return _weights(out)

    one, two = run(tmp_path / "one", 1, 4), run(tmp_path / "two", 2, 2)
    for k in one:
        torch.testing.assert_close(one[k], two[k], atol=1e-5, rtol=1e-4, msg=k)
