"""The runner picks how a task is answered from the task module, never from its name."""

from types import SimpleNamespace

from llm_jepa.data import example_from_row
from llm_jepa.eval import runner
from tests._factory import conv


def test_a_task_with_choose_is_answered_without_generation(monkeypatch):
    calls = []

    def choose(model, tok, batch, plain=False, batch_size=8, separator="\n"):
        calls.append(len(batch))
        return [{"choice": "B"} for _ in batch]

    task = SimpleNamespace(PRIMARY="choice", choose=choose,
                           score=lambda gen, ex, **_: {"choice": gen == ex.assistant})
    monkeypatch.setattr(runner, "generate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("generated")))
    batch = [example_from_row({"messages": conv("pick one", "B")}), example_from_row({"messages": conv("pick", "C")})]
    run = SimpleNamespace(model=None, tokenizer=None, plain_text=False, view=SimpleNamespace(separator="\n"))
    out = runner._score_batch("multiple_choice_toy", task, run, batch, None, 2, {})
    assert calls == [2]
    assert [r["correct"] for r in out] == [True, False] and [r["generation"] for r in out] == ["B", "B"]
