import pytest
import torch

from llm_jepa.bench.strategies import packed_step, paper_2row_step, paper_3row_step
from llm_jepa.collator import PackingCollator
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [conv("lines with the string 'dog'", "(.*dog.*)"), conv("lines ending with a vowel", "(.*[AEIOUaeiou])"),
        conv("what is 1,000 plus 42?", "1042")]


@pytest.mark.parametrize("baseline", [paper_3row_step, paper_2row_step])
def test_paper_style_baselines_compute_the_same_losses_as_ours(baseline):
    """Apples to apples: the baselines differ from our path in cost only, not in the numbers."""
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok, attn="eager")
    items = [ViewBuilder(tok, ViewConfig(predictors=2))(example_from_row({"messages": r})) for r in ROWS]
    obj = ObjectiveConfig()
    with torch.no_grad():
        ours = packed_step(model, items, PackingCollator(pad_token_id=tok.pad_token_id), obj, "cpu")
        theirs = baseline(model, items, obj, "cpu", tok.pad_token_id, max_length=64)
    torch.testing.assert_close(theirs.lm_loss, ours.lm_loss, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(theirs.jepa_loss, ours.jepa_loss, atol=1e-4, rtol=1e-4)
    assert theirs.real_tokens == ours.real_tokens
    assert theirs.padded_tokens > ours.padded_tokens  # the baselines pad every row to max_length


def test_benchmark_runs_end_to_end_on_a_tiny_configuration(tmp_path):
    from llm_jepa.bench.run import STRATEGIES, BenchConfig, run_bench

    cfg = BenchConfig(steps=2, warmup=1, batch_size=4, size="micro", gen_prompts=4, gen_tokens=4, max_length=128)
    res = run_bench(cfg, workdir=tmp_path, json_path=tmp_path / "bench.json")
    assert set(res["strategies"]) == set(STRATEGIES)
    assert all(r["step_s"] > 0 and r["examples_per_s"] > 0 for r in res["strategies"].values())
    assert {"ours_vs_paper_3row_examples_per_s", "jepa_vs_plain_step_time", "dropout_0.75_expected"} <= set(res["ratios"])
    assert res["generation"]["same_outputs"] is True
    assert (tmp_path / "bench.json").exists()
    print(res["ratios"], res["generation"]["speedup"])  # numbers are printed, not asserted
