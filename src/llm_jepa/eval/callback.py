"""Score a held-out subset during training and log its accuracy next to the losses."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["AccuracyCallback"]


class AccuracyCallback(TrainerCallback):
    """Every ``every_steps`` optimizer steps (or at each epoch end when ``every_steps`` is 0),
    evaluate the model on ``examples`` and log ``eval_accuracy`` (plus each metric). With
    ``similarity=True`` also ``eval_similarity_correct`` / ``eval_similarity_incorrect`` (off by
    default: an extra forward at every evaluation)."""

    def __init__(self, examples: list, tokenizer: Any, *, every_steps: int = 0, batch_size: int = 16,
                 similarity: bool = False, **eval_options: Any) -> None:
        self.examples, self.tokenizer = examples, tokenizer
        self.every_steps, self.batch_size, self.options = every_steps, batch_size, eval_options
        self.similarity = similarity
        self.trainer: Any = None

    def _score(self, model: Any, args: Any = None) -> dict[str, float]:
        """Evaluate with the prompts and views of the run being trained (``args``: its training config)."""
        from ..runs import in_memory_run
        from .runner import evaluate

        run = in_memory_run(model, self.tokenizer, config=args)
        summary = evaluate(run, self.examples, batch_size=self.batch_size, quiet=True,
                           similarity=self.similarity, **self.options)
        logs = {"eval_accuracy": summary["accuracy"]}
        logs.update({f"eval_{k}": v["accuracy"] for k, v in summary["metrics"].items()})
        for label in ("correct", "incorrect"):
            if summary.get(f"similarity_{label}") is not None:
                logs[f"eval_similarity_{label}"] = summary[f"similarity_{label}"]
        return logs

    def _log(self, args: Any, state: Any, model: Any) -> None:
        logs = self._score(model, args)
        if self.trainer is not None:
            self.trainer.log(logs)
        else:
            state.log_history.append({**logs, "step": state.global_step})

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self._log(args, state, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if not self.every_steps:
            self._log(args, state, model)
