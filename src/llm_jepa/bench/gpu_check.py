"""The GPU check of issue 17 in one call: the rows of its table on a Llama-3.2-1B-shaped model.

Random weights built from a config (hidden 2048, 16 layers, 32 query / 8 key-value heads, 128256
vocabulary), so no checkpoint or hub is needed; NL-RX batches of 32. One ``run_bench`` per row,
each written as soon as it finishes (a run cut short still leaves the rows before it):

- ``sdpa_b32``: plain, paper 3-row, packed short rows, one row; plus generation (bf16, and fp32
  on the prompts where batched and one-at-a-time disagree);
- ``flex_b32``: the same packed strategies under flex attention (first step = compile time);
- ``auto_b32``: what ``--attn auto`` resolves to on that machine;
- ``smollm2_b32``: the same under ``auto`` on the SmolLM2-135M shape (the real model of the
  CPU protocol in docs/results.md; random weights, since the checkpoint does not travel).

STP rides along in every packed row: it adds no token, so its cost over plain is the gather and
the cosine of its tube loss.

``dry_run`` runs the same rows on CPU with a tiny model and one step each: a check of the
plumbing, not a measurement.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

__all__ = ["LLAMA_3_2_1B", "ROWS", "gpu_check"]

#: the shape of Llama-3.2-1B (tied embeddings, grouped-query attention 32/8, head dim 64)
LLAMA_3_2_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
#: the shape of SmolLM2-135M-Instruct (tied embeddings, grouped-query attention 9/3, head dim 64)
SMOLLM2_135M = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "vocab_size": 49152,
                "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "tie_word_embeddings": True}
_TINY = {**LLAMA_3_2_1B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024}

_PACKED = ["plain", "stp", "jepa_packed", "jepa_one_row"]
#: row name -> BenchConfig overrides; ``shape`` (not a BenchConfig field) names another model shape
ROWS: dict[str, dict[str, Any]] = {
    "sdpa_b32": {"attn": "sdpa", "strategies": ["plain", "paper_3row", "stp", "jepa_packed", "jepa_one_row"],
                 "generation": True},
    "flex_b32": {"attn": "flex_attention", "strategies": _PACKED},
    "auto_b32": {"attn": "auto", "strategies": _PACKED},
    "smollm2_b32": {"attn": "auto", "strategies": _PACKED, "shape": "smollm2_135m"},
}
_SHAPES = {"llama_3_2_1b": LLAMA_3_2_1B, "smollm2_135m": SMOLLM2_135M}


def _shape_file(workdir: Path, name: str, dry_run: bool) -> str:
    """The config file of shape ``name`` (the tiny one on a dry run, whatever the name)."""
    config = workdir / ("tiny_llama.json" if dry_run else f"{name}.json")
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps(_TINY if dry_run else _SHAPES[name], indent=2))
    return str(config)


def _base(workdir: Path, dry_run: bool) -> Any:
    from .run import BenchConfig

    config = _shape_file(workdir, "llama_3_2_1b", dry_run)
    if dry_run:
        return BenchConfig(model_config=config, size="micro", device="cpu", batch_size=2, steps=1, warmup=1,
                           max_length=64, gen_prompts=2, gen_tokens=4, generation=False)
    return BenchConfig(model_config=config, size="micro", batch_size=32, steps=5, warmup=2, gen_prompts=32,
                       gen_tokens=48, generation=False)


def _header(base: Any, dry_run: bool) -> list[str]:
    import torch
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and base.device != "cpu" else "none (CPU)"
    return [f"# GPU check (issue 17){' - DRY RUN on CPU, not a measurement' if dry_run else ''}", "",
            f"device: {gpu}; torch {torch.__version__}; transformers {transformers.__version__}", "",
            f"model (random weights, unless a row names another shape): "
            f"{json.dumps(json.loads(Path(base.model_config).read_text()))}",
            "",
            "command: `scripts/gpu_check.sh" + (" --dry-run" if dry_run else "") + "`", ""]


def gpu_check(out_dir: str | Path, workdir: str | Path = ".bench", dry_run: bool = False) -> dict[str, Any]:
    """Run every row of :data:`ROWS`; write ``<row>.json`` and ``gpu_check.md`` to ``out_dir``.
    A row that fails is recorded with its error and the next one still runs."""
    from .report import to_markdown
    from .run import run_bench

    out, workdir = Path(out_dir), Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    base = _base(workdir, dry_run)
    md, results = _header(base, dry_run), {}
    for name, overrides in ROWS.items():
        if dry_run and overrides["attn"] == "flex_attention":
            overrides = {**overrides, "attn": "sdpa"}  # flex attention has no backward on CPU
        if "shape" in overrides:
            overrides = {**{k: v for k, v in overrides.items() if k != "shape"},
                         "model_config": _shape_file(workdir, overrides["shape"], dry_run)}
        t = time.perf_counter()
        try:
            res = run_bench(replace(base, **overrides), workdir, json_path=out / f"{name}.json")
            results[name] = {"attention": res["attention"], "seconds": time.perf_counter() - t}
            md += [f"## {name}: requested {overrides['attn']}, ran {res['attention']}, batch {base.batch_size}, "
                   f"{res['dtype']}, model {Path(res['config']['model_config']).stem} "
                   f"({results[name]['seconds']:.0f} s)", "", to_markdown(res)]
        except Exception as e:  # noqa: BLE001 - one broken row must not lose the others' numbers
            results[name] = {"error": f"{type(e).__name__}: {e}"}
            md += [f"## {name}: FAILED", "", f"    {results[name]['error']}", ""]
            print(f"gpu-check: {name} failed: {results[name]['error']}", flush=True)
        (out / "gpu_check.md").write_text("\n".join(md) + "\n")
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))
    return results
