"""Callbacks the tests inject through ``--callbacks module:Class``."""

import os

from transformers import TrainerCallback


class CrashOnRank(TrainerCallback):
    """Raise on rank LLM_JEPA_CRASH_RANK after step LLM_JEPA_CRASH_STEP (a failing worker)."""

    def on_step_end(self, args, state, control, **kwargs):
        rank = int(os.environ.get("RANK", "0"))
        if rank == int(os.environ["LLM_JEPA_CRASH_RANK"]) and state.global_step == int(os.environ["LLM_JEPA_CRASH_STEP"]):
            raise RuntimeError(f"injected failure on rank {rank} at step {state.global_step}")


class RecordViewDecisions(TrainerCallback):
    """Write this rank's loss-dropout decisions, (micro-batch index, views skipped) in the order the
    collator made them, to ``<output_dir>/decisions-rank<R>.json`` when training ends."""

    def __init__(self) -> None:
        self.decisions: list[tuple[int, bool]] = []

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        collator = train_dataloader.collate_fn
        decide = collator.skip_views

        def recorded() -> bool:
            position = collator._position
            skip = decide()
            self.decisions.append((position, skip))
            return skip

        collator.skip_views = recorded

    def on_train_end(self, args, state, control, **kwargs):
        import json
        from pathlib import Path

        rank = int(os.environ.get("RANK", "0"))
        Path(args.output_dir, f"decisions-rank{rank}.json").write_text(json.dumps(self.decisions))


class RecordEngine(TrainerCallback):
    """Write how this rank's model is wrapped to ``<output_dir>/engine-rank<R>.json`` after the first
    step: the model's class, whether its parameters are DTensors (FSDP2) and the local and full
    element counts of the LM head weight."""

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step != 1:
            return
        import json
        from pathlib import Path

        weight = model.get_output_embeddings().weight if hasattr(model, "get_output_embeddings") else None
        local = getattr(weight, "to_local", None)
        info = {
            "model_class": type(model).__name__,
            "dtensor_params": sum(type(p).__name__ == "DTensor" for p in model.parameters()),
            "lm_head_local_numel": (local() if local else weight).numel() if weight is not None else None,
            "lm_head_numel": weight.numel() if weight is not None else None,
        }
        rank = int(os.environ.get("RANK", "0"))
        Path(args.output_dir, f"engine-rank{rank}.json").write_text(json.dumps(info))
