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


def test_sliding_window_mask_literal():
    seg = torch.tensor([[0, 0, 0, 0, 1, 1]])
    expected = torch.tensor([[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                             [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(block_causal_mask(seg, window=2)[0], expected)


@pytest.mark.parametrize("isolation", ["position_ids", "explicit"])
def test_packed_segments_longer_than_a_sliding_window_equal_separate_forwards(isolation):
    """A model with sliding-window layers (Gemma 3): the explicit 4D mask reached every layer as
    given, so a segment longer than the window saw past it (found on Gemma-3-270M, tests/real)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from llm_jepa.objective import forward_packed

    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=3,
                              layer_types=["sliding_attention", "full_attention"], attn_implementation="sdpa")
    model = Gemma3ForCausalLM(config).eval()
    segs = [torch.randint(1, 64, (n,)).tolist() for n in (9, 4, 7)]
    seg_ids = torch.tensor([[i for i, s in enumerate(segs) for _ in s]])
    batch = {"input_ids": torch.tensor([[t for s in segs for t in s]]), "segment_ids": seg_ids,
             "position_ids": position_ids_from_segments(seg_ids)}
    with torch.no_grad():
        packed = forward_packed(model, batch, isolation)[0][0]
        start = 0
        for s in segs:
            alone = model(input_ids=torch.tensor([s]), output_hidden_states=True).hidden_states[-1][0]
            torch.testing.assert_close(packed[start : start + len(s)], alone, atol=1e-5, rtol=1e-5)
            start += len(s)
