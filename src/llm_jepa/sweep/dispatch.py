"""Where runs execute: here one after another, one process per local GPU, or a Slurm job array.

Each executor takes ``todo`` (a list of ``(run, run_dir, resume)``) and ``execute``, the function that
runs one of them (``execute(run, run_dir, resume)``, picklable, never raising: the runner passes its
own), and returns one outcome per run: the result dict, or a traceback string if it failed. This
module imports nothing from the runner: the runner calls the executors, never the other way.
Completion is recorded in files by the run itself, so an interrupted sweep resumes the same way
under any executor. No scheduling of our own: the stdlib process pool or submitit does it.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["sequential", "local", "submitit"]


Todo = Sequence[tuple[Any, Path, bool]]


def sequential(todo: Todo, execute: Callable, **_: Any) -> list[Any]:
    """Run in this process, in order."""
    return [execute(run, run_dir, resume) for run, run_dir, resume in todo]


def _pin_gpu(queue: Any) -> None:
    # Each worker process takes one GPU for its whole life, before anything initialises CUDA.
    os.environ["CUDA_VISIBLE_DEVICES"] = queue.get()


def _visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def _result(get: Callable[[], Any]) -> Any:
    try:
        return get()
    except Exception:  # a worker that died (out of memory, killed) fails its run only
        return traceback.format_exc()


def local(todo: Todo, execute: Callable, *, gpus: Sequence[str] | None = None, **_: Any) -> list[Any]:
    """One worker process per GPU (``gpus``: ids, default all visible), each pinned to its GPU."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    gpus = [str(g) for g in gpus] if gpus else _visible_gpus()
    if not gpus:
        raise ValueError("executor 'local' runs one process per GPU, but none is visible; "
                         "use the sequential executor or name devices with --gpus")
    if not todo:
        return []
    ctx = multiprocessing.get_context("spawn")  # fork would copy a CUDA context, if the parent made one
    queue = ctx.Queue()
    for gpu in gpus:
        queue.put(gpu)
    with ProcessPoolExecutor(max_workers=len(gpus), mp_context=ctx, initializer=_pin_gpu,
                             initargs=(queue,)) as pool:
        futures = [pool.submit(execute, run, run_dir, resume) for run, run_dir, resume in todo]
        return [_result(f.result) for f in futures]


def submitit(todo: Todo, execute: Callable, *, slurm: dict[str, Any] | None = None, folder: Path, **_: Any) -> list[Any]:
    """Submit all runs as one Slurm job array through submitit (runs locally where Slurm is absent)
    and wait for them. ``slurm``: ``update_parameters`` keywords, e.g. timeout_min, gpus_per_node,
    slurm_partition, slurm_array_parallelism."""
    try:
        import submitit as sub
    except ImportError:
        raise ValueError("executor 'submitit' needs the submitit package: pip install submitit") from None
    if not todo:
        return []
    executor = sub.AutoExecutor(folder=str(Path(folder) / "submitit" / "%j"))
    executor.update_parameters(**{"name": "llm-jepa-sweep", **(slurm or {})})
    with executor.batch():
        jobs = [executor.submit(execute, run, run_dir, resume) for run, run_dir, resume in todo]
    return [_result(job.result) for job in jobs]
