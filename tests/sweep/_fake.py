"""A fake run function for sweep tests: no training, deterministic accuracy, a metrics log.

Module-level (not a closure) so the process-pool executor can send it to workers.
"""

import json
import os
from pathlib import Path

CALLS: list[tuple[str, bool]] = []


def accuracy(cell: dict, seed: int) -> float:
    """Baseline 0.5; JEPA cells gain 0.1 * k * lambda (10% more on odd seeds, so that the gain varies
    over seeds and a t-test has something to test); the seed moves it by up to 0.006."""
    gain = 0.0 if cell.get("regular") else 0.1 * cell.get("k", 0) * cell.get("lambda", 0) * (1 + 0.1 * (seed % 2))
    return 0.5 + gain + 0.001 * (seed % 7)


def fake_run(run, run_dir: Path, *, resume: bool = False) -> dict:
    CALLS.append((run.run_id, resume))
    train = run_dir / "train"
    train.mkdir(parents=True, exist_ok=True)
    jepa = not run.cell.get("regular")
    with (train / "metrics.jsonl").open("w") as f:
        for step in (10, 20, 30):
            record = {"step": step, "lm_loss": 2.0 / step, "flops": 1e9 * (3 if jepa else 1)}
            if jepa:
                record["jepa_loss"] = 1.0 / step
            f.write(json.dumps(record) + "\n")
    return {"accuracy": accuracy(run.cell, run.seed), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES")}
