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
