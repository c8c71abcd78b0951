import pytest
import torch

from llm_jepa.attention import (
    additive_block_causal_mask,
    block_causal_mask,
    position_ids_from_segments,
)


def test_block_causal_mask_literal():
    seg = torch.tensor([[0, 0, 1, 1, 1, 2]])
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(block_causal_mask(seg)[0], expected)


def test_position_ids_restart_per_segment():
    seg = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 1, 1, 1, 2, 2]])
    pos = position_ids_from_segments(seg)
    assert pos.tolist() == [[0, 1, 0, 1, 2, 0], [0, 0, 1, 2, 0, 1]]


def test_additive_mask_is_zero_where_allowed():
    seg = torch.tensor([[0, 1, 1]])
    bias = additive_block_causal_mask(seg)
    assert bias.shape == (1, 1, 3, 3)
    allowed = bias[0, 0] == 0
    assert allowed.tolist() == [[True, False, False], [False, True, False], [False, True, True]]
    assert (bias[0, 0][~allowed] == torch.finfo(torch.float32).min).all()


@pytest.mark.slow
def test_flex_attention_gives_the_packed_objective_of_sdpa_with_position_ids():
    """'auto' picks flex attention on CUDA without flash-attn; transformers builds its block mask from
    the restarting position ids. Forward only: flex attention has no backward on CPU (torch 2.13),
    and compiles on first call (~15 s here)."""
    from llm_jepa.collator import PackingCollator
    from llm_jepa.data import example_from_row
    from llm_jepa.objective import ObjectiveConfig, compute_objective
    from llm_jepa.views import ViewBuilder, ViewConfig
    from tests._factory import conv, make_tokenizer, tiny_llama

    tok = make_tokenizer("chatml")
    rows = [conv("lines with the string 'dog'", "(.*dog.*)"), conv("what is 1,000 plus 42?", "1042")]
    items = [ViewBuilder(tok, ViewConfig(predictors=2))(example_from_row({"messages": r})) for r in rows]
    batch = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=0)(items)  # one row, as under flex
    cfg = ObjectiveConfig(isolation="position_ids")
    with torch.no_grad():
        sdpa = compute_objective(tiny_llama(tok, attn="sdpa"), batch, cfg)
        flex = compute_objective(tiny_llama(tok, attn="flex_attention"), batch, cfg)
    torch.testing.assert_close(flex.lm_loss, sdpa.lm_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flex.jepa_loss, sdpa.jepa_loss, atol=1e-5, rtol=1e-5)
