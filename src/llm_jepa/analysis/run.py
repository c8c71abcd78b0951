"""``analyze``: embed the Text and Code views of a data set with several models, compare, and plot.

For each model: Enc(Text), Pred(Enc(Text)) and Enc(Code) for every example (via
``llm_jepa.embeddings.encode_views``, with the views built as the model was trained: see
:mod:`llm_jepa.runs`), then the spectrum of Enc(Text) - Enc(Code), the linear residual from Text to
Code, collapse diagnostics of each view, retrieval of Code from Pred(Enc(Text)), and the
trajectory-straightness diagnostic of STP (mean ``cos(rest, patch)`` on the held-out conversations,
:mod:`llm_jepa.analysis.straightness`). For a model trained ``code_to_text`` the prediction is
Pred(Enc(Code)) and the ``pred_*`` numbers compare it with Enc(Text) (its ``direction`` is recorded).
Writes ``analysis.json`` (every number, and the settings each model was read with),
``singular_values.png`` and ``tsne.png``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..diskwrite import json_safe  # re-exported: its home moved to llm_jepa.diskwrite

__all__ = ["analyze", "summarize_views", "format_table", "json_safe"]


def summarize_views(text: Any, pred: Any, code: Any, *, top: int = 100, target: Any = None) -> dict[str, Any]:
    """Every number of the analysis for one model's views (each [N, C]). Pure; no files written.
    ``target``: what ``pred`` was trained to match (default ``code``; Enc(Text) for a code_to_text
    run): the ``pred_*`` numbers compare ``pred`` with it."""
    from .metrics import collapse_diagnostics, linear_residual, retrieval_accuracy, singular_values

    target = code if target is None else target
    spectrum = singular_values(text, code, top=top)
    pred_spectrum = singular_values(pred, target, top=top)
    return {
        "n": int(text.shape[0]),
        "dim": int(text.shape[1]),
        "singular_values_text_code": spectrum.tolist(),
        "singular_values_pred_code": pred_spectrum.tolist(),
        "mean_top_singular_value": spectrum.mean().item(),
        "linear_residual_text_code": linear_residual(text, code),
        "linear_residual_pred_code": linear_residual(pred, target),
        "collapse": {name: collapse_diagnostics(v) for name, v in (("text", text), ("pred", pred), ("code", code))},
        "retrieval_pred_to_code": retrieval_accuracy(pred, target),
        "retrieval_text_to_code": retrieval_accuracy(text, code),
    }


def _default_load() -> Callable[..., Any]:
    from ..runs import load_run

    return load_run


def _view_settings(view: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(view).items() if k not in ("label_mode", "build_views")}


def _check_view_pairs(models: Sequence[Any], overrides: list[dict[str, Any]], examples: list) -> None:
    """Every model's settings read (its tokenizer, no weights) and its ``view_pair`` checked against
    every row: a pair a row lacks is named before any model's weights load."""
    for path, given in zip(models, overrides, strict=True):
        run = _default_load()(path, weights=False, **given)
        for ex in examples:
            ex.view_pair(run.view.view_pair)


def _default_encode() -> Callable[..., Any]:
    from ..embeddings import encode_views

    return encode_views


def _names(models: Sequence[str | Path], overrides: Sequence[dict[str, Any]]) -> list[str]:
    """Short unique labels: the directory name, with as many parents as it takes to tell two models
    apart, and the settings that differ when the same model is given twice (its results would
    otherwise replace each other's under one label). The same model with the same settings twice is refused."""
    keys = [(_identity(m), tuple(sorted(o.items()))) for m, o in zip(models, overrides, strict=True)]
    twice = next((m for i, (m, k) in enumerate(zip(models, keys, strict=True)) if k in keys[:i]), None)
    if twice is not None:
        raise ValueError(f"model {str(twice)!r} is given twice with the same settings; give each model once")
    parts = [Path(ident).parts or (ident,) for ident, _ in keys]

    def label(i: int) -> str:  # the shortest tail no other model's path shares
        others = [p for j, p in enumerate(parts) if keys[j][0] != keys[i][0]]
        for depth in range(1, len(parts[i]) + 1):
            tail = parts[i][-depth:]
            if all(p[-depth:] != tail for p in others):
                break
        return "/".join(tail)

    labels = [label(i) for i in range(len(models))]
    return [f"{lab} ({', '.join(f'{k}={v}' for k, v in o.items())})" if labels.count(lab) > 1 else lab
            for lab, o in zip(labels, overrides, strict=True)]


def _identity(model: str | Path) -> str:
    """A local model by its resolved path (``runs/x`` and ``./runs/x`` are one model), a hub name as given."""
    return str(Path(model).resolve()) if Path(model).exists() else str(Path(model))


def _check_output(output: Path, overwrite: bool) -> None:
    """Refuse a folder another llm-jepa run holds (a training writing there: one line naming it),
    and a non-empty one unless ``overwrite``; the folder is made only when the results are written (a
    row or a model refused on the way leaves nothing behind)."""
    from ..runrecord import check_unlocked

    check_unlocked(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} is not empty; pass overwrite=True (--overwrite) to replace its analysis")
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} is a file; --output names the folder for the analysis")


def _per_model_overrides(models: Sequence[Any], predictors: int | Sequence[int] | None,
                         settings: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Explicit settings for each model: ``settings`` for all, and k (one for all, or one per model)."""
    if predictors is None or isinstance(predictors, int):
        ks = [predictors] * len(models)
    elif len(predictors) != len(models):
        raise ValueError(f"got {len(predictors)} predictor counts for {len(models)} models")
    else:
        ks = [int(k) for k in predictors]
    return [{**(settings or {}), **({"predictors": k} if k is not None else {})} for k in ks]


def analyze(
    models: Sequence[str | Path],
    data: str | Path,
    *,
    output: str | Path,
    limit: int | None = 1000,
    predictors: int | Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    batch_size: int = 16,
    overwrite: bool = False,
    top: int = 100,
    seed: int = 0,
    encode: Callable[..., Any] | None = None,
    load: Callable[..., Any] | None = None,
    straightness: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Analyse ``models`` on the first ``limit`` examples of ``data``; write figures and ``analysis.json``.

    Each model's views are built as it was trained (:func:`llm_jepa.runs.load_run`: k, predictor
    position and order, direction, anchor rule, template). ``predictors`` (an int for all, a list
    with one per model) and ``settings`` (training option names) override what the runs saved.
    ``encode`` / ``load`` replace ``encode_views`` / ``load_run`` (tests, custom models);
    ``straightness`` replaces the trajectory diagnostic (skipped with a custom ``encode`` unless given).
    Returns the dict written to ``analysis.json``: ``{"data", "n", "models": {name: numbers}}``.
    Refuses a non-empty ``output`` unless ``overwrite``, and one another llm-jepa run holds.
    """
    for name, value, least in (("batch_size", batch_size, 1), ("top", top, 1), ("limit", limit or 1, 1)):
        if value < least:
            raise ValueError(f"{name} must be at least {least}, got {value}")
    from ..runrecord import OutputLock

    output = Path(output)
    _check_output(output, overwrite)
    from ..data import load_examples

    examples = load_examples(data, limit)
    for ex in examples:  # a plain text row has no Text and Code views: refused before any model loads
        ex.require_conversation("analyze")
    with OutputLock(output, "analysis"):  # a training started into it meanwhile is refused, and names this one
        return _analyze(models, data, examples, output, predictors=predictors, settings=settings,
                        batch_size=batch_size, top=top, seed=seed, encode=encode, load=load, straightness=straightness)


def _analyze(models: Sequence[str | Path], data: str | Path, examples: list, output: Path, *,
             predictors: int | Sequence[int] | None, settings: dict[str, Any] | None, batch_size: int, top: int,
             seed: int, encode: Callable[..., Any] | None, load: Callable[..., Any] | None,
             straightness: Callable[..., Any] | None) -> dict[str, Any]:
    """:func:`analyze` once its arguments, rows and ``output`` (locked) are checked."""
    if straightness is None and encode is None:
        from .straightness import trajectory_straightness as straightness
    overrides = _per_model_overrides(models, predictors, settings)
    if load is None:
        _check_view_pairs(models, overrides, examples)
    encode, load = encode or _default_encode(), load or _default_load()
    result: dict[str, Any] = {"data": str(data), "n": len(examples), "models": {}}
    spectra, clouds = {}, {}
    for name, path, given in zip(_names(models, overrides), models, overrides, strict=True):
        run = load(path, **given)
        view = run.view
        views = encode(run.model, run.tokenizer, examples, view=view, batch_size=batch_size)
        straight = straightness(run.model, run.tokenizer, examples, plain_text=run.plain_text, separator=view.separator,
                                max_length=view.max_length, batch_size=batch_size, seed=seed) if straightness else None
        del run  # free the GPU before the next model
        summary = summarize_views(views.text, views.pred, views.code, top=top, target=views.target)
        if straight is not None:
            summary["straightness"] = straight
        result["models"][name] = {"path": str(path), "predictors": view.predictors, "direction": view.direction,
                                  "settings": _view_settings(view), **summary}
        spectra[name] = summary["singular_values_text_code"]
        clouds[name] = (views.text.float().cpu().numpy(), views.code.float().cpu().numpy())
    _write_results(output, result, spectra, clouds, seed)
    return result


def _write_results(output: Path, result: dict[str, Any], spectra: dict, clouds: dict, seed: int) -> None:
    """The figures, then analysis.json, each whole; a full disk removes what this call wrote (the
    folder is left as the check found it, so the same command runs again) and is one line."""
    from ..diskwrite import reporting_full_disk, write_json
    from .plots import plot_singular_values, plot_tsne

    names = ("singular_values.png", "tsne.png", "analysis.json")

    def cleanup() -> None:
        for name in names:
            (output / name).unlink(missing_ok=True)

    with reporting_full_disk(output, cleanup):
        output.mkdir(parents=True, exist_ok=True)
        result["figures"] = {
            "singular_values": str(plot_singular_values(spectra, output / names[0])),
            "tsne": str(plot_tsne(clouds, output / names[1], seed=seed)),
        }
        write_json(output / names[2], result)


def format_table(result: dict[str, Any]) -> str:
    """A short plain-text table of the headline numbers, one line per model."""
    header = f"{'model':<28} {'k':>2} {'top1':>6} {'top5':>6} {'resid':>7} {'sv1':>9} {'cos(code)':>9} {'erank':>7}  collapsed"
    lines = [header, "-" * len(header)]
    for name, m in result["models"].items():
        r, c = m["retrieval_pred_to_code"], m["collapse"]["code"]
        sv = m["singular_values_text_code"]
        lines.append(
            f"{name[:28]:<28} {m['predictors']:>2} {r['top1']:>6.3f} {r['top5']:>6.3f} "
            f"{m['linear_residual_text_code']['relative']:>7.3f} {sv[0] if sv else math.nan:>9.3g} "
            f"{c['mean_cosine']:>9.3f} {c['effective_rank']:>7.2f}  "
            f"{'YES' if any(v['collapsed'] for v in m['collapse'].values()) else 'no'}"
            + (f"  straightness cos(rest, patch) {m['straightness']['rest_patch_cosine']:.3f}, "
               f"steps {m['straightness']['step_cosine']:.3f}" if "straightness" in m else "")
        )
    lines.append("top1/top5: Pred(Enc(Text)) retrieves its own Enc(Code); resid: relative linear residual "
                 "Text->Code (needs N > C); sv1: largest singular value of Enc(Text)-Enc(Code); straightness: "
                 "mean cos(rest, patch) over random spans of the conversation (STP's target, 1 = straight) and "
                 "between consecutive token steps")
    if any(not m["linear_residual_text_code"]["overdetermined"] for m in result["models"].values()):
        lines.append("note: N <= hidden size for some model, so its linear residual is ~0 by construction")
    return "\n".join(lines)
