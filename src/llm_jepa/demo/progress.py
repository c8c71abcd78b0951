"""What the demo shows while an arm trains: one progress bar per arm.

Instead of the Trainer's log dictionaries every few steps (``{'loss': ..., 'epoch': '0.04'}``, the
first seconds-per-step figure only at the end of an arm), each arm gets one ``tqdm`` bar with its
step, the training loop's seconds per step and the time left. Training passes it by import path
(``--callbacks llm_jepa.demo.progress:ArmProgress``); its :attr:`ArmProgress.replaces_trainer_output`
tells :func:`llm_jepa.train.train` to drop the Trainer's own printing (the numbers still reach
``metrics.jsonl``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers import TrainerCallback

__all__ = ["ArmProgress", "CALLBACK", "quiet_loading_bars"]

CALLBACK = "llm_jepa.demo.progress:ArmProgress"
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} steps |{bar:24}| {rate_inv_fmt}, {remaining} left"


class ArmProgress(TrainerCallback):
    """A bar per training run: ``baseline: 120/400 steps |#####   | 0.77s/step, 03:35 left`` (tqdm's
    rate of the loop's steps; a resumed run counts from its checkpoint's step)."""

    #: the Trainer's PrinterCallback/ProgressCallback would print over the bar
    replaces_trainer_output = True

    def __init__(self) -> None:
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from tqdm import tqdm

        tty = sys.stderr.isatty()
        self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=Path(args.output_dir).name,
                        unit="step", bar_format=BAR_FORMAT, file=sys.stderr, mininterval=0.5 if tty else 30.0,
                        ascii=not tty, smoothing=0.1)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def quiet_loading_bars() -> None:
    """No "Loading weights" / "Writing model shards" bars from transformers (six per arm)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
