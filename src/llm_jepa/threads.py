"""``--threads N``: torch's CPU threads for one process, the same option on every command.

On a shared CPU torch's default (one intra-op thread per core) can be several times slower than
fewer threads: SmolLM2-135M training steps were 3-4x slower with the default two threads on a
loaded 2-core machine than with one thread on a quiet one.
"""

from __future__ import annotations

import logging

__all__ = ["set_threads", "THREADS_HELP"]

THREADS_HELP = "torch CPU threads for this process (intra-op and inter-op; default: torch's choice)"

log = logging.getLogger(__name__)


def set_threads(n: int | None) -> None:
    """Use ``n`` intra-op and inter-op threads (``None`` or 0: leave torch's defaults)."""
    if not n:
        return
    if n < 0:
        raise ValueError(f"--threads must be a positive number of threads, got {n}")
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError as e:  # only settable before the first inter-op parallel work of the process
        log.info("inter-op threads stay at %d (%s)", torch.get_num_interop_threads(), e)
