"""Trajectory straightness: how close a model's hidden-state path over a conversation is to a line.

The STP paper's "geodesic hypothesis" (arXiv 2602.22617): along the content tokens of the request
and the answer, the hidden states of a well-trained model move along a nearly straight line, so
the displacement across a random span (``patch``) points the same way as the displacement across the
rest (``rest``). Two numbers, on held-out conversations, under ``torch.no_grad()``:

- ``rest_patch_cosine``: mean ``cos(rest, patch)`` over random spans (what STP's loss raises;
  1 = a straight path; about 0 for unrelated directions);
- ``step_cosine``: mean cosine between consecutive one-token steps (the curvature variant's view;
  1 = no turning at all).

Both compare models trained with and without STP on the same data; neither is an accuracy. A path
that wanders around a fixed centre (no drift) gives a ``rest_patch_cosine`` of about -0.5: a span's
end points are end points of the rest too, with opposite signs. Measured on the demo's micro model:
-0.51 for plain fine-tuning, +0.01 after STP (docs/stp.md).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["trajectory_straightness"]


@torch.no_grad()
def trajectory_straightness(model: Any, tok: Any, examples: list, *, plain_text: bool = False, separator: str = "\n",
                            times: int = 4, layer: int = -1, max_length: int = 512, batch_size: int = 16,
                            seed: int = 0) -> dict:
    """``{"rest_patch_cosine", "step_cosine", "spans", "turns"}`` for ``examples`` (spans drawn with
    ``seed``, ``times`` per example, at hidden-states index ``layer``). A ``plain_text`` conversation is
    rendered as request + ``separator`` + answer, as the run was trained."""
    from ..collator import PackingCollator
    from ..objective import forward_packed
    from ..stp import StpConfig, displacements
    from ..views import ViewBuilder, ViewConfig

    builder = ViewBuilder(tok, ViewConfig(build_views=False, chat_template=not plain_text, separator=separator,
                                          max_length=max_length))
    spans = StpConfig(times=times, layer=layer)
    turns = StpConfig(variant="curvature", layer=layer)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = next(model.parameters()).device
    cos_spans, cos_steps = [], []
    for i in range(0, len(examples), batch_size):
        items = [builder(ex) for ex in examples[i : i + batch_size]]
        for cfg, sink in ((spans, cos_spans), (turns, cos_steps)):
            batch = PackingCollator(pad, pack_length=0, stp=cfg, seed=seed)(items)
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            hidden = forward_packed(model, batch, all_layers=True)[0][layer]
            if cfg.variant == "curvature":
                h = hidden[batch["stp_turns"][..., 0], batch["stp_turns"][..., 1]].float()  # [K, 3, C]
                sink.append(torch.nn.functional.cosine_similarity(h[:, 1] - h[:, 0], h[:, 2] - h[:, 1], dim=-1))
            else:
                rest, patch = displacements(hidden, batch["stp_index"])
                sink.append(torch.nn.functional.cosine_similarity(rest, patch, dim=-1))
    a, b = torch.cat(cos_spans), torch.cat(cos_steps)
    return {"rest_patch_cosine": a.mean().item() if len(a) else float("nan"),
            "step_cosine": b.mean().item() if len(b) else float("nan"), "spans": len(a), "turns": len(b)}
