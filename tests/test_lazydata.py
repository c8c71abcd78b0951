"""--streaming: rows read and tokenized in the data loader give the in-memory run, resumed too."""

import json

import pytest
import torch
from safetensors.torch import load_file

from llm_jepa.config import load_config
from llm_jepa.data import DataError, load_examples
from llm_jepa.lazydata import LazyExamples
from llm_jepa.train import train
from tests._factory import conv, write_checkpoint
from tests.test_train import train_killed_after_step_3

ROWS = [{"messages": conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}")}
        for w in ("dog", "truck", "ring", "lake") for n in range(1, 5)]
ROWS[3] = {"messages": ROWS[3]["messages"] + [{"role": "user", "content": "again"}, {"role": "assistant", "content": "x"}]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("lazy")
    write_checkpoint(d / "ckpt")
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" + ("\n" if i == 5 else "") for i, r in enumerate(ROWS)))
    return d


def _cfg(d, out, *extra):
    return load_config(None, ["--model", str(d / "ckpt"), "--data", str(d / "train.jsonl"), "--output_dir", str(out),
                              "--max_steps", "4", "--per_device_train_batch_size", "4", "--save_steps", "2",
                              "--disable_tqdm", "true", "--learning_rate", "1e-3", "--seed", "5", "--alpha", "0.3",
                              "--stp_lambda", "0.1", "--k", "2", "--report_to", "none", *extra])


def test_lazy_rows_are_the_loaded_rows(setup):
    lazy, eager = LazyExamples(setup / "train.jsonl"), load_examples(setup / "train.jsonl")
    assert len(lazy) == len(eager) == 16 and [lazy[i] for i in range(16)] == eager
    assert [lazy[i].source for i in (5, 6)] == [eager[5].source, eager[6].source] == [
        (str(setup / "train.jsonl"), 6), (str(setup / "train.jsonl"), 8)]  # line numbers survive a blank line
    sub = LazyExamples(setup / "train.jsonl").subset(0.5, seed=3)
    from llm_jepa.data import subset_examples

    assert [sub[i] for i in range(len(sub))] == subset_examples(eager, 0.5, seed=3)


def test_a_bad_row_is_named_in_the_checking_pass(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"messages": [{"role": "user", "content": "u"}]}\n')
    with pytest.raises(DataError, match=f"{path}:2: field 'messages': expected at least one 'assistant'"):
        LazyExamples(path)


def test_streaming_trains_exactly_the_in_memory_run_and_resumes(setup, tmp_path, monkeypatch):

    eager, lazy, cut = tmp_path / "eager", tmp_path / "lazy", tmp_path / "cut"
    train(_cfg(setup, eager))
    train(_cfg(setup, lazy, "--streaming", "true"))
    a, b = load_file(eager / "model.safetensors"), load_file(lazy / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    train_killed_after_step_3(_cfg(setup, cut, "--streaming", "true"), monkeypatch)
    train(_cfg(setup, cut, "--streaming", "true", "--resume", "true"))
    c = load_file(cut / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-6, rtol=1e-5, msg=k)
