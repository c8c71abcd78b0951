"""Distances against obvious reference computations; the cross-rank InfoNCE on 2 gloo processes."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from llm_jepa.losses import cosine_distance, infonce_loss, jepa_distance, l2_distance, mse_distance


def test_distances_on_literal_vectors():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert cosine_distance(p, t).tolist() == pytest.approx([0.0, 1.0])
    assert l2_distance(p, t).tolist() == pytest.approx([0.0, 8**0.5])
    assert mse_distance(p, t).tolist() == pytest.approx([0.0, 4.0])
    logits = torch.tensor([[1.0, 1.0], [0.0, 0.0]]) / 0.5  # cosine similarities / temperature
    expected = [-torch.log_softmax(logits[i], 0)[i].item() for i in range(2)]
    assert infonce_loss(p, t, temperature=0.5).tolist() == pytest.approx(expected)


def test_bad_shapes_and_names():
    with pytest.raises(ValueError, match=r"\[P, C\]"):
        cosine_distance(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="unknown distance"):
        jepa_distance("hamming")


def _worker(rank, world, port, pred, target, out):
    import torch.distributed as dist

    from llm_jepa.losses import infonce_loss_gathered

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    P = len(pred) // world
    p = pred[rank * P : (rank + 1) * P].clone().requires_grad_(True)
    t = target[rank * P : (rank + 1) * P].clone().requires_grad_(True)
    loss = infonce_loss_gathered(p, t, temperature=0.1).sum()
    loss.backward()
    out[rank] = (loss.detach(), p.grad, t.grad)
    dist.destroy_process_group()


def test_gathered_infonce_matches_one_process_over_the_global_batch():
    torch.manual_seed(0)
    pred, target = torch.randn(6, 5), torch.randn(6, 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, port, pred, target, out), nprocs=2, join=True)
    # reference: every prediction against all 6 targets, on one process
    p, t = pred.clone().requires_grad_(True), target.clone().requires_grad_(True)
    logits = F.normalize(p, dim=-1) @ F.normalize(t, dim=-1).T / 0.1
    F.cross_entropy(logits, torch.arange(6), reduction="sum").backward()
    total = out[0][0] + out[1][0]
    assert total.item() == pytest.approx(F.cross_entropy(logits.detach(), torch.arange(6), reduction="sum").item(),
                                         rel=1e-5)
    torch.testing.assert_close(torch.cat([out[0][1], out[1][1]]), p.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([out[0][2], out[1][2]]), t.grad, atol=1e-5, rtol=1e-4)
