import torch

from llm_jepa.collator import PackingCollator, pack_segments
from llm_jepa.views import Segment, TokenizedExample


def _example(conv, labels, src, src_anchor, tgt, tgt_anchor):
    return TokenizedExample(
        lm=[Segment(conv, labels=labels)],
        pairs=[(Segment(src, anchor=src_anchor), Segment(tgt, anchor=tgt_anchor))],
    )


BATCH = [
    _example([1, 2, 3, 4], [-100, -100, 3, 4], [5, 6], 1, [7, 8, 9], 2),
    _example([11, 12, 13], [-100, 12, 13], [15], 0, [17, 18], 1),
]


def test_two_example_batch_in_one_row_literal():
    out = PackingCollator(pad_token_id=0, pack_length=0)(BATCH)
    # order: conversations, then (source, target) per pair
    assert out["input_ids"].tolist() == [[1, 2, 3, 4, 11, 12, 13, 5, 6, 7, 8, 9, 15, 17, 18]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 1, 2, 0, 0, 1]]
    assert out["labels"].tolist() == [[-100, -100, 3, 4, -100, 12, 13] + [-100] * 8]
    # targets shift within a segment only: the last token of a segment predicts nothing
    assert out["shift_labels"].tolist() == [[-100, 3, 4, -100, 12, 13, -100] + [-100] * 8]
    assert out["source_anchor"].tolist() == [[0, 8], [0, 12]]
    assert out["target_anchor"].tolist() == [[0, 11], [0, 14]]
    assert (out["num_lm_tokens"], out["num_view_tokens"], out["num_pad_tokens"]) == (7, 8, 0)


def test_rows_are_packed_and_padded_to_the_longest_row():
    out = PackingCollator(pad_token_id=0, pack_length=5)(BATCH)
    ids, seg, pos = out["input_ids"], out["segment_ids"], out["position_ids"]
    assert ids.shape[1] == 5 and out["num_pad_tokens"] == ids.numel() - 15
    # every anchor points at the token it was given
    for anchors, col in (("source_anchor", 0), ("target_anchor", 1)):
        got = [ids[r, c].item() for r, c in out[anchors].tolist()]
        want = [p[col].input_ids[p[col].anchor] for ex in BATCH for p in ex.pairs]
        assert got == want
    # padding forms its own segment and restarts positions
    pad = ids == 0
    assert (out["labels"][pad] == -100).all()
    assert torch.equal(pos[:, 0], torch.zeros(len(ids), dtype=torch.long))
    assert seg.shape == ids.shape


def test_pack_segments_first_fit_decreasing():
    assert pack_segments([4, 3, 2, 1], 5) == [[0, 3], [1, 2]]
    assert pack_segments([6, 1], 5) == [[0], [1]]  # too long: a row of its own
    assert pack_segments([3, 3], 0) == [[0, 1]]


def test_loss_dropout_skips_views_at_rate_alpha_and_is_seeded():
    c1 = PackingCollator(pad_token_id=0, loss_dropout=0.75, seed=3)
    c2 = PackingCollator(pad_token_id=0, loss_dropout=0.75, seed=3)
    draws = [c1(BATCH) for _ in range(2000)]
    skipped = [d["views_skipped"] for d in draws]
    assert abs(sum(skipped) / len(skipped) - 0.75) < 0.03
    assert skipped == [c2(BATCH)["views_skipped"] for _ in range(2000)]  # every rank draws the same
    for d in draws[:50]:
        if d["views_skipped"]:  # a skipped batch carries no view token at all
            assert d["num_view_tokens"] == 0 and d["source_anchor"].numel() == 0
            assert d["input_ids"].numel() - d["num_pad_tokens"] == 7
        else:
            assert d["num_view_tokens"] == 8


def test_auto_pack_length_keeps_rows_short_for_dense_masks():
    from llm_jepa.collator import auto_pack_length

    assert auto_pack_length([10, 40, 60]) == 128  # 2 x 60 -> next power of two, at least 128
    assert auto_pack_length([100]) == 256
    assert auto_pack_length([3000]) == 4096
    assert auto_pack_length([5000]) == 5000  # a segment is never split
    out = PackingCollator(pad_token_id=0)(BATCH)  # default -1: automatic
    assert out["input_ids"].shape[1] <= 128
    assert out["lm_segment_lengths"] == [4, 3] and out["view_segment_lengths"] == [2, 3, 1, 2]
