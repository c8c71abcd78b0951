"""Callbacks the tests inject through ``--callbacks module:Class``."""

import os

from transformers import TrainerCallback


class CrashOnRank(TrainerCallback):
    """Raise on rank LLM_JEPA_CRASH_RANK after step LLM_JEPA_CRASH_STEP (a failing worker)."""

    def on_step_end(self, args, state, control, **kwargs):
        rank = int(os.environ.get("RANK", "0"))
        if rank == int(os.environ["LLM_JEPA_CRASH_RANK"]) and state.global_step == int(os.environ["LLM_JEPA_CRASH_STEP"]):
            raise RuntimeError(f"injected failure on rank {rank} at step {state.global_step}")
