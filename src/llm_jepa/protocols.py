"""Training protocols as presets: ``--protocol paper`` is the LLM-JEPA paper's released protocol.

The preset is a training-config YAML shipped with the package (``llm_jepa/presets/``; the repository's
``configs/paper_protocol.yaml`` is the same file), every value with its source in the released code
as a comment. ``llm-jepa train --protocol paper`` reads it as ``--config`` does; ``llm-jepa demo
--protocol paper`` applies the settings of :data:`DEMO_SETTINGS` to every arm (the demo keeps its own
scale: steps, batch size, learning rate, precision, and its view flags); a sweep names the file as
its ``base``.

:func:`holdout_split` draws the held-out training rows on which a sweep chooses its best cell
beside the paper's choice on the test rows (``holdout`` in a sweep file).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

__all__ = ["PROTOCOLS", "DEMO_SETTINGS", "protocol_file", "protocol_settings", "demo_overrides", "holdout_split",
           "holdout_paths", "holdout_texts"]

PRESETS = Path(__file__).parent / "presets"
#: protocol name -> its preset file (``default`` is llm-jepa's own settings: no file)
PROTOCOLS = {"default": None, "paper": PRESETS / "paper_protocol.yaml"}
#: the preset's options the demo applies: the recipe, not the scale (steps, batch, rate) nor the
#: machine's precision; ``view_system`` stays the demo's flag (its default is the preset's)
DEMO_SETTINGS = ("lr_scheduler_type", "warmup_steps", "weight_decay", "adam_beta1", "adam_beta2", "adam_epsilon",
                 "max_grad_norm", "label_mode", "max_length", "dataloader_drop_last")


def protocol_file(name: str) -> Path | None:
    """The preset file of protocol ``name`` (None for ``default``)."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def protocol_settings(name: str) -> dict[str, Any]:
    """The options a protocol sets ({} for ``default``)."""
    from .config import read_yaml_options

    path = protocol_file(name)
    return {} if path is None else read_yaml_options(path)


def demo_overrides(name: str) -> dict[str, Any]:
    """The training overrides ``llm-jepa demo --protocol name`` adds to every arm."""
    settings = protocol_settings(name)
    return {k: settings[k] for k in DEMO_SETTINGS if k in settings}


def holdout_split(train_file: str | Path, rows: int, seed: int, out: str | Path) -> tuple[Path, Path]:
    """Hold ``rows`` rows of ``train_file`` out: ``out/train.jsonl`` (the others) and ``out/holdout.jsonl``,
    both in file order; the held-out rows are the first ``rows`` of a permutation drawn with ``seed``,
    and a training row identical to a held-out row (files hold exact duplicates) is dropped from
    training, so no held-out text is trained on. Files already there with this content are kept."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = holdout_paths(out)
    for path, text in zip(paths, holdout_texts(train_file, rows, seed), strict=True):
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)  # rewritten only when it differs: a rerun keeps the runs' data hashes
    return paths


def holdout_paths(out: str | Path) -> tuple[Path, Path]:
    """Where :func:`holdout_split` writes: ``out/train.jsonl`` and ``out/holdout.jsonl``."""
    return Path(out) / "train.jsonl", Path(out) / "holdout.jsonl"


def holdout_texts(train_file: str | Path, rows: int, seed: int) -> tuple[str, str]:
    """The texts of the training and held-out files of :func:`holdout_split`, computed, not written
    (a report compares them with the split on disk)."""
    lines = [line for line in Path(train_file).read_text().splitlines() if line.strip()]
    if not 0 < rows < len(lines):
        raise ValueError(f"{train_file}: holdout rows must be in [1, {len(lines) - 1}] for its {len(lines)} rows, "
                         f"got {rows}")
    held = set(random.Random(seed).sample(range(len(lines)), rows))
    texts = {lines[i] for i in held}
    train = [line for i, line in enumerate(lines) if i not in held and line not in texts]
    return tuple("".join(line + "\n" for line in chosen)  # type: ignore[return-value]
                 for chosen in (train, [lines[i] for i in sorted(held)]))
