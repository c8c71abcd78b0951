"""Run under ``torchrun --nproc_per_node 2`` (CPU, gloo): the LLM-JEPA objective on a model sharded with
FSDP2 (``fully_shard`` on every decoder layer and on the root, parameters resharded after forward)
against the same objective on an unsharded copy. Writes ``<out>/fsdp2-rank<R>.json``."""

import copy
import json
import sys
from pathlib import Path

import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from llm_jepa.collator import PackingCollator
from llm_jepa.data import example_from_row
from llm_jepa.objective import ObjectiveConfig, compute_objective
from llm_jepa.views import ViewBuilder, ViewConfig
from tests._factory import conv, make_tokenizer, tiny_llama

ROWS = [conv(f"lines with the string '{w}' {n} times", f"({w}){{{n},}}") for w in ("dog", "ring") for n in (1, 2)]


def main(out: str, isolation: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    tok = make_tokenizer("chatml")
    model = tiny_llama(tok).train()  # seeded: the same weights on every rank
    reference = copy.deepcopy(model)
    items = [ViewBuilder(tok, ViewConfig(predictors=1))(example_from_row({"messages": r})) for r in ROWS]
    collate = PackingCollator(pad_token_id=tok.pad_token_id, pack_length=48)
    shards = [collate(items[i::world]) for i in range(world)]  # rank i's micro-batch
    cfg = ObjectiveConfig(gamma=0.7, jepa_lambda=1.3, distance="cosine", isolation=isolation)

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model, reshard_after_forward=True)
    sharded = type(model.lm_head.weight).__name__ == "DTensor"
    result = compute_objective(model, shards[rank], cfg)
    result.loss.backward()  # FSDP2 averages the gradients over ranks

    # oracle: the mean over ranks of each rank's objective, on one unsharded model
    ref = [compute_objective(reference, b, cfg) for b in shards]
    (sum(r.loss for r in ref) / world).backward()
    errors = {}
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        errors[name] = (grad - q.grad).abs().max().item()
    # what the objective did before the head moved inside the forward: call it on the output afterwards
    try:
        from llm_jepa.objective import _unwrap, forward_hidden

        _unwrap(model).get_output_embeddings()(forward_hidden(model, shards[rank], isolation)[0])
        outside = "ran"
    except Exception as e:  # noqa: BLE001 - recorded for the test to read
        outside = f"{type(e).__name__}: {e}"
    report = {
        "lm_head_sharded": sharded, "head_outside_forward": outside,
        "max_grad": max(q.grad.abs().max().item() for q in reference.parameters()),
        "lm_loss": result.lm_loss.item(), "ref_lm_loss": ref[rank].lm_loss.item(),
        "jepa_loss": result.jepa_loss.item(), "ref_jepa_loss": ref[rank].jepa_loss.item(),
        "max_grad_error": max(errors.values()), "worst": max(errors, key=errors.get), "params": len(errors),
    }
    Path(out, f"fsdp2-rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
