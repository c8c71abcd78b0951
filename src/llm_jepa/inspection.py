"""``inspect``: how the first N examples become segments, and the loss terms of one batch.

Use it on a new model family before training: it shows the decoded text of every segment, which
tokens carry labels, which token is each view's anchor, and ``lm_loss`` / ``jepa_loss`` / ``total``
of one batch without training (also the way to compare with other implementations). ``total`` is the
objective's optimised loss for an optimiser step whose whole batch is these examples. With
``--stp_lambda``: every STP span drawn for the example (epoch 0), the content tokens of ``rest`` and of
``patch``, and ``stp_loss``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .config import JepaConfig
from .data import load_examples
from .objective import compute_objective
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


def _add_stp_spans(tok: Any, items: list, batch: dict[str, Any], report: dict[str, Any]) -> None:
    """Each example's STP spans: offsets [s, t) over its content tokens and the tokens of rest and patch."""
    from .stp import span_tokens

    for ex in report["examples"]:
        ex["stp_spans"] = []
    for i, s, t in batch["stp_spans"].tolist():
        seg = items[i].lm[0]
        rest, patch = ([seg.input_ids[p] for p in ps] for ps in span_tokens(seg.content, s, t))
        report["examples"][i]["stp_spans"].append({
            "span": [s, t], "content_tokens": len(rest) + len(patch),
            "rest": tok.convert_ids_to_tokens(rest), "patch": tok.convert_ids_to_tokens(patch),
            "rest_text": tok.decode(rest), "patch_text": tok.decode(patch),
        })


def inspect_examples(cfg: JepaConfig, num_examples: int = 2) -> dict[str, Any]:
    """Segments of the first ``num_examples`` rows and the loss terms of them as one batch."""
    from .train import build_components

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
    if "stp_spans" in batch:
        _add_stp_spans(tok, items, batch, report)
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
                                        "predictor_position", "label_mode", "plain_text", "anchor_offset",
                                        "stp_lambda", "stp_variant", "stp_layer")},
    }
    return report


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for ex in report["examples"]:
        console.rule(ex["source"])
        for seg in ex["conversation"]:
            console.print("[bold]conversation[/bold]", repr(seg["text"]))
            console.print("  [green]labels cover[/green]", repr(seg["labelled_text"]))
            for i, text in enumerate(seg.get("stp_content", [])):
                console.print(f"  [magenta]content {i}[/magenta]", repr(text))
        for pair in ex["pairs"]:
            for role in ("source", "target"):
                seg = pair[role]
                console.print(f"[bold]{role} view[/bold]", repr(seg["text"]))
                console.print(f"  [cyan]anchor[/cyan] #{seg['anchor_index']} = {seg['anchor_token']!r}")
        for span in ex.get("stp_spans", []):
            s, t = span["span"]
            console.print(f"[bold]STP span[/bold] [{s}, {t}) of {span['content_tokens']} content tokens")
            console.print("  [magenta]patch[/magenta]", repr(span["patch_text"]))
            console.print("  [magenta]rest[/magenta] ", repr(span["rest_text"]), "(the user's, then the answer's)")
    table = Table(title="one batch")
    for key in ("lm_loss", "jepa_loss", "total"):
        table.add_column(key)
    table.add_row(*(f"{report[k]:.6f}" if report[k] is not None else "-" for k in ("lm_loss", "jepa_loss", "total")))
    console.print(table)
    if report["terms"]:
        console.print("terms:", {k: round(v, 6) for k, v in report["terms"].items()})
    console.print(report["batch"], report["settings"])
