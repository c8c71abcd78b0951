"""``--threads``: one option, the same on train, eval, analyze and bench, setting torch's threads."""

import pytest
import torch

from llm_jepa.cli import build_parser
from llm_jepa.threads import set_threads


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_threads_sets_torch_threads(restore_threads):
    set_threads(1)
    assert torch.get_num_threads() == 1
    set_threads(None)  # no option given: unchanged
    assert torch.get_num_threads() == 1
    with pytest.raises(ValueError, match="--threads"):
        set_threads(-2)


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "m", "--data", "d", "--output", "o", "--threads", "3"],
    ["analyze", "--model", "m", "--data", "d", "--output", "o", "--threads", "3"],
    ["bench", "--threads", "3"],
])
def test_every_command_takes_threads(argv):
    assert build_parser().parse_args(argv).threads == 3


def test_train_takes_threads_and_applies_it(tmp_path, restore_threads, monkeypatch):
    from llm_jepa import threads
    from llm_jepa.config import load_config
    from llm_jepa.train import train

    cfg = load_config(None, ["--output_dir", str(tmp_path), "--threads", "1"])
    assert cfg.threads == 1
    seen = []
    monkeypatch.setattr(threads, "set_threads", seen.append)
    with pytest.raises(ValueError, match="no model given"):
        train(cfg)  # fails after the threads are set, before any model is loaded
    assert seen == [1]


@pytest.mark.parametrize(("argv", "module", "function"), [
    (["eval", "--model", "m", "--data", "d", "--output", "o"], "llm_jepa.eval.runner", "evaluate"),
    (["analyze", "--model", "m", "--data", "d", "--output", "o"], "llm_jepa.analysis.run", "analyze"),
])
def test_eval_and_analyze_apply_threads_before_their_work(argv, module, function, monkeypatch):
    """Parsing --threads is not applying it: each command must set the threads before it loads a model."""
    import importlib

    from llm_jepa import threads
    from llm_jepa.cli import main

    calls = []
    monkeypatch.setattr(threads, "set_threads", lambda n: calls.append(("threads", n)))

    class Stop(BaseException):  # stop here: no model is loaded
        pass

    def work(*a, **k):
        calls.append(("work", None))
        raise Stop

    monkeypatch.setattr(importlib.import_module(module), function, work)
    with pytest.raises(Stop):
        main([*argv, "--threads", "3"])
    assert calls == [("threads", 3), ("work", None)]
