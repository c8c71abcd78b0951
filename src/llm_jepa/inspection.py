"""``inspect``: how the first N examples become segments, and the loss terms of one batch.

Use it on a new model family before training: it shows the decoded text of every segment, which
tokens carry labels, which token is each view's anchor, and ``lm_loss`` / ``jepa_loss`` / ``total``
of one batch without training (also the way to compare with other implementations). ``total`` is the
objective's optimised loss for an optimiser step whose whole batch is these examples; ``terms`` each
switched-on objective term (and its metrics), and a term's ``describe`` hook adds what it drew (with
``--stp_lambda``: every STP span of the example (epoch 0), the content tokens of ``rest`` and of
``patch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

from .config import JepaConfig
from .data import load_examples
from .objective import TERMS, compute_objective
from .views import IGNORE, Segment

__all__ = ["InspectArgs", "inspect_examples", "print_report"]


@dataclass
class InspectArgs:
    num_examples: int = field(default=2, metadata={"help": "How many examples to show.", "aliases": ["--n"]})
    json: bool = field(default=False, metadata={"help": "Print one JSON object instead of a readable report."})


def _describe(tok: Any, seg: Segment) -> dict[str, Any]:
    pieces = tok.convert_ids_to_tokens(seg.input_ids)
    out: dict[str, Any] = {"text": tok.decode(seg.input_ids), "num_tokens": len(seg.input_ids), "tokens": pieces}
    if seg.labels is not None:
        out["labelled_text"] = tok.decode([t for t in seg.labels if t != IGNORE])
        out["num_labelled"] = sum(t != IGNORE for t in seg.labels)
    if seg.content is not None:  # each turn's content tokens: what STP's trajectory runs over
        out["stp_content"] = [tok.decode(seg.input_ids[a:b]) for a, b in seg.content]
    if seg.anchor is not None:
        out["anchor_index"] = seg.anchor
        out["anchor_token"] = pieces[seg.anchor]
    return out


def inspect_examples(cfg: JepaConfig, num_examples: int = 2) -> dict[str, Any]:
    """Segments of the first ``num_examples`` rows and the loss terms of them as one batch."""
    from .train import build_components

    if num_examples < 1:  # load_examples(path, 0) reads nothing and said "no examples"
        raise ValueError(f"--n must be at least 1, got {num_examples}")

    parts = build_components(cfg)
    tok, model = parts["tokenizer"], parts["model"]
    examples = load_examples(cfg.train_file, num_examples)
    items = [parts["builder"](ex) for ex in examples]
    report: dict[str, Any] = {"examples": []}
    for ex, item in zip(examples, items, strict=True):
        report["examples"].append(
            {
                "source": f"{ex.source[0]}:{ex.source[1]}",
                "conversation": [_describe(tok, s) for s in item.lm],
                "pairs": [{"source": _describe(tok, a), "target": _describe(tok, b)} for a, b in item.pairs],
            }
        )
    batch = parts["eval_collator"](items)
    on = parts["objective"].terms
    for name in on:  # what each switched-on term drew for these examples (STP: its spans)
        if TERMS[name].describe is not None:
            TERMS[name].describe(tok, items, batch, report)
    model.eval()
    with torch.no_grad():
        out = compute_objective(model, batch, parts["objective"])
    report["lm_loss"] = out.lm_loss.item()
    report["jepa_loss"] = None if out.jepa_loss is None else out.jepa_loss.item()
    report["total"] = out.loss.item()
    report["terms"] = {k: v.item() for k, v in out.terms.items()}
    report["batch"] = {
        "rows": int(batch["input_ids"].shape[0]),
        "row_length": int(batch["input_ids"].shape[1]),
        "lm_tokens": batch["num_lm_tokens"],
        "view_tokens": batch["num_view_tokens"],
        "pad_tokens": batch["num_pad_tokens"],
    }
    report["settings"] = {
        "model": cfg.model_name_or_path,
        "isolation": parts["objective"].isolation,
        **{k: getattr(cfg, k) for k in ("predictors", "distance", "jepa_lambda", "gamma", "direction",
                                        "predictor_position", "label_mode", "plain_text", "anchor_offset")},
        # every term's options, whether on or off (so a reader sees that STP was off): from its registration
        **{f.name: getattr(cfg, f.name) for term in TERMS.values() if term.options for f in fields(term.options)
           if hasattr(cfg, f.name)},
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for ex in report["examples"]:
        console.rule(ex["source"])
        for seg in ex["conversation"]:
            console.print("[bold]conversation[/bold]", escape(repr(seg["text"])))
            console.print("  [green]labels cover[/green]", escape(repr(seg["labelled_text"])))
            for i, text in enumerate(seg.get("stp_content", [])):
                console.print(f"  [magenta]content {i}[/magenta]", escape(repr(text)))
        for pair in ex["pairs"]:
            for role in ("source", "target"):
                seg = pair[role]
                console.print(f"[bold]{role} view[/bold]", escape(repr(seg["text"])))
                console.print(f"  [cyan]anchor[/cyan] #{seg['anchor_index']} = {escape(repr(seg['anchor_token']))}")
        for span in ex.get("stp_spans", []):
            s, t = span["span"]
            console.print(f"[bold]STP span[/bold] [{s}, {t}) of {span['content_tokens']} content tokens")
            console.print("  [magenta]patch[/magenta]", escape(repr(span["patch_text"])))
            console.print("  [magenta]rest[/magenta] ", escape(repr(span["rest_text"])), "(the user's, then the answer's)")
    table = Table(title="one batch")
    for key in ("lm_loss", "jepa_loss", "total"):
        table.add_column(key)
    table.add_row(*(f"{report[k]:.6f}" if report[k] is not None else "-" for k in ("lm_loss", "jepa_loss", "total")))
    console.print(table)
    if report["terms"]:
        console.print("terms:", {k: round(v, 6) for k, v in report["terms"].items()})
    console.print(report["batch"], report["settings"])
