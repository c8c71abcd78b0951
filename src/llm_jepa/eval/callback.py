"""Score a held-out subset during training and log its accuracy next to the losses."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

__all__ = ["AccuracyCallback", "accuracy_callbacks"]


class AccuracyCallback(TrainerCallback):
    """Every ``every_steps`` optimizer steps (or at each epoch end when ``every_steps`` is 0),
    evaluate the model on ``examples`` and log ``eval_accuracy`` (plus each metric). With
    ``similarity=True`` also ``eval_similarity_correct`` / ``eval_similarity_incorrect`` (off by
    default: an extra forward at every evaluation)."""

    def __init__(self, examples: list, tokenizer: Any = None, *, every_steps: int = 0, batch_size: int = 16,
                 similarity: bool = False, **eval_options: Any) -> None:
        self.examples, self.tokenizer = examples, tokenizer
        self.every_steps, self.batch_size, self.options = every_steps, batch_size, eval_options
        self.similarity = similarity
        self.trainer: Any = None

    def on_train_begin(self, args, state, control, processing_class=None, **kwargs):
        if self.tokenizer is None:  # built from the training config: the trainer's own tokenizer
            self.tokenizer = processing_class

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


def accuracy_callbacks(cfg: Any) -> list[AccuracyCallback]:
    """The accuracy callback the training config asks for (``--accuracy_every_steps N`` scores the
    first ``--accuracy_examples`` rows of ``--eval_file``), or none. Reads the rows now, so a bad
    file is an error before training writes anything."""
    if not cfg.accuracy_every_steps:
        return []
    if not cfg.eval_file:
        raise ValueError("--accuracy_every_steps needs held-out rows to score: give --eval_file")
    from ..data import load_examples
    from .tasks import detect_task, get_task

    examples = load_examples(cfg.eval_file, cfg.accuracy_examples)
    task = cfg.accuracy_task or detect_task(examples[0])
    module = get_task(task)  # an unknown name fails here too
    if hasattr(module, "check"):  # what evaluate() would refuse at the first scoring, mid-run (Spider's databases)
        try:
            module.check(examples)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"--accuracy_every_steps on {task} rows: {e}; training-time scoring takes no task "
                             "options, so score this task with llm-jepa eval after training") from None
    return [AccuracyCallback(examples, every_steps=cfg.accuracy_every_steps, batch_size=cfg.per_device_eval_batch_size,
                             task=task)]
