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
