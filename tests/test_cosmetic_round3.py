"""One line, not a traceback or a misleading message, for counts of nothing and for a chat template the
jinja sandbox blocks (issue 27)."""

import pytest

from llm_jepa.cli import main
from tests._factory import make_tokenizer, tiny_llama, write_checkpoint, write_rows
from tests.test_train import ROWS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("data") / "train.jsonl", ROWS[:4])


@pytest.mark.parametrize("flag", ["--steps", "--gen-tokens"])
def test_bench_with_nothing_to_time_is_one_line_before_any_model(flag, capsys, monkeypatch):
    # red team: bench --steps 0 built the model, ran, then said "no median for empty data"
    import llm_jepa.bench.run as bench_run

    monkeypatch.setattr(bench_run, "_model", lambda *a, **k: pytest.fail("a model was built"))
    assert main(["bench", flag, "0", "--size", "micro"]) == 2
    assert f"{flag} must be at least 1, got 0" in capsys.readouterr().err


def test_inspect_zero_examples_says_which_option(tmp_path, data, capsys):
    # red team: inspect --n 0 said "no examples", as if the data file were empty
    ckpt = write_checkpoint(tmp_path / "ckpt")
    assert main(["inspect", "--model", str(ckpt), "--data", str(data), "--n", "0"]) == 2
    assert "--n must be at least 1, got 0" in capsys.readouterr().err


def test_a_chat_template_the_sandbox_blocks_is_one_line(tmp_path, data, capsys):
    # red team: a template reaching for ''.__class__ died with jinja2's SecurityError traceback
    tok = make_tokenizer("chatml")
    tok.chat_template = "{{ ''.__class__.__mro__ }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tiny_llama(tok).save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    argv = ["train", "--model", str(tmp_path / "ckpt"), "--data", str(data), "--output_dir", str(tmp_path / "run"),
            "--max_steps", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the chat template failed (SecurityError: access to attribute '__class__'" in err
    assert f"{data}:1" in err and "Traceback" not in err
