"""A trained run, loaded in one place: model, tokenizer and the settings it was trained with.

``llm-jepa train`` saves every resolved option as ``llm_jepa_config.yaml`` beside the weights. What
a later reader needs from it is how prompts and views were built: plain text or chat template, the
separator, k and where and in which order the predictors sit, the direction, the anchor rule,
``max_length`` and the dtype. :func:`load_run` reads them once and every consumer (``eval`` and its
similarity metric, ``analyze``, the demo, the sweep, the training-time accuracy callback) takes them
from the :class:`TrainedRun` it returns, so a model is evaluated on the prompts and views it was
trained on. Explicit overrides (``load_run(path, separator=" => ")``, the ``--separator`` flag) win
over the file; ``None`` means "not given".

A model without the file (a hub model, a base checkpoint) gets the defaults, with k = 0 (it never
trained predictors) and plain text exactly when its tokenizer has no chat template. A run that
trained no predictors (``--regular`` or ``--lambda 0``) also reads as k = 0. A run saved before a
setting existed gets the value the code of that time used (:data:`LEGACY`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .views import ViewConfig

__all__ = [
    "RUN_CONFIG", "LEGACY", "SETTINGS", "TrainedRun", "load_run", "in_memory_run", "read_run_config",
    "resolve_view", "split_settings", "add_run_arguments", "run_overrides",
]

RUN_CONFIG = "llm_jepa_config.yaml"  # written by llm_jepa.train beside every trained model

#: settings a saved run may lack because it predates them -> the value the code of that time used
LEGACY = {"predictor_order": "ascending"}

def _run_settings() -> dict[str, tuple[type, ...]]:
    """The training options whose field declares the ``run`` role, with the types their annotation names."""
    import typing

    from .config import RUN, config_class, options_with

    hints = _hints(config_class())
    return {name: typing.get_args(hints[name]) or (hints[name],) for name in options_with(RUN)}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved type annotations of a training config class (built once per class)."""
    import typing

    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


_HINTS: dict[type, dict[str, Any]] = {}


class _Settings(Mapping):
    """:func:`_run_settings`, derived again at each read: a term registered after this module was
    imported (``objective.register_term``) with a ``run``-role option is a run setting too (eval's
    flags, its resume identity, ``TrainedRun.settings()``), not only the terms known at import."""

    def _now(self) -> dict[str, tuple[type, ...]]:
        return _run_settings()

    def __getitem__(self, name: str) -> tuple[type, ...]:
        return self._now()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())

    def __repr__(self) -> str:
        return f"SETTINGS({self._now()!r})"


#: the settings a consumer takes from a run (the training option names), with their types: the
#: options whose field in the training config (:func:`~llm_jepa.config.config_class`: JepaConfig and
#: every registered term's options) has the ``run`` role. A live mapping, never a snapshot.
SETTINGS: Mapping[str, tuple[type, ...]] = _Settings()
#: the run settings that are fields of the view (the others: plain_text and dtype, said by the run
#: itself, and a term's own run-role options, kept in ``TrainedRun.config``)
_VIEW_FIELDS = frozenset(f.name for f in fields(ViewConfig)) - {"chat_template", "build_views"}
_BASELINE = {"regular": (bool,), "jepa_lambda": (int, float)}  # read only to tell that k was never trained


@dataclass
class TrainedRun:
    """A model with the settings it was trained with. ``model`` is None until :meth:`load_weights`
    (so a caller can check its outputs before paying for the weights)."""

    name: str  # directory or hub name; "<in memory>" for a model handed over loaded
    tokenizer: Any
    view: ViewConfig  # how its prompts and views are built; predictors = the k it trained
    dtype: str = "auto"
    config: dict[str, Any] = field(default_factory=dict)  # the saved training options ({} without a file)
    model: Any = None

    @property
    def plain_text(self) -> bool:
        return not self.view.chat_template

    def settings(self) -> dict[str, Any]:
        """The resolved settings under their training option names (for summaries and run identity)."""
        special = {"plain_text": self.plain_text, "dtype": self.dtype}
        return {name: special[name] if name in special else getattr(self.view, name) if name in _VIEW_FIELDS
                else self.config.get(name, _default(name)) for name in SETTINGS}  # a term's: as saved

    def with_overrides(self, **overrides: Any) -> TrainedRun:
        """The same run with some settings replaced (``None`` values are ignored)."""
        view, dtype = resolve_view(self.settings(), overrides, self.tokenizer)
        return replace(self, view=view, dtype=dtype, config=_with_term_settings(self.config, overrides))

    def load_weights(self, device: str | None = None) -> Any:
        """Load the model (once) through :func:`llm_jepa.modeling.load_model`, in eval mode on ``device``
        (default: the GPU when there is one)."""
        if self.model is None:
            import torch

            from .modeling import load_model

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.model = load_model(self.name, self.tokenizer, dtype=self.dtype).to(device).eval()
        return self.model


def _default(name: str) -> Any:
    """A training option's default (what a run saved without it trained with)."""
    from .config import config_class, option_default

    return option_default(config_class().__dataclass_fields__[name])


def _with_term_settings(config: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``config`` with the given run settings that are no view field (a term's own) replaced: they
    live in the run's config, where :meth:`TrainedRun.settings` reads them."""
    given = {k: v for k, v in (overrides or {}).items()
             if v is not None and k not in _VIEW_FIELDS and k not in ("plain_text", "dtype")}
    return {**(config or {}), **given}


def _line_of(path: Path, key: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(rf"{re.escape(key)}\s*:", line):
            return i
    return 0


def read_run_config(name_or_path: str | Path) -> tuple[dict[str, Any], Path | None]:
    """The saved training options of a run directory and the file they came from; ``({}, None)``
    for anything without ``llm_jepa_config.yaml`` (a hub name, a base checkpoint)."""
    from .config import read_yaml_options

    path = Path(name_or_path) / RUN_CONFIG
    if not path.is_file():
        path = _parent_run_config(Path(name_or_path))
    return (read_yaml_options(path), path) if path is not None and path.is_file() else ({}, None)


def _parent_run_config(folder: Path) -> Path | None:
    """For a ``checkpoint-N`` saved before checkpoints held their config: the run's config in force
    at step N. A resume with changed options kept the earlier one as ``llm_jepa_config.before-step-S.yaml``
    (used up to step S): the first such S >= N, else the run's current config."""
    import re

    step = re.fullmatch(r"checkpoint-(\d+)", folder.name)
    if step is None or not (folder.parent / RUN_CONFIG).is_file():
        return None
    earlier = sorted((int(m.group(1)), p) for p in folder.parent.glob("llm_jepa_config.before-step-*.yaml")
                     if (m := re.fullmatch(r"llm_jepa_config\.before-step-(\d+)\.yaml", p.name)))
    return next((p for s, p in earlier if s >= int(step.group(1))), folder.parent / RUN_CONFIG)


def _checked(values: Mapping[str, Any], types: Mapping[str, tuple[type, ...]], where: Any) -> dict[str, Any]:
    """The entries of ``values`` named in ``types``, type-checked; ``where(key)`` names a bad one."""
    out = {}
    for key, allowed in types.items():
        if values.get(key) is None:
            continue
        value = values[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise ValueError(f"{where(key)}: expected {names}, got {value!r}")
        out[key] = value
    return out


def resolve_view(
    config: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
    tokenizer: Any = None,
    source: Path | None = None,
) -> tuple[ViewConfig, str]:
    """(view settings, dtype) of a run from its saved training options ``config`` (None or {}: a
    model without them) and explicit ``overrides`` (training option names; None values ignored).
    ``tokenizer`` decides plain text for a model without a config; ``source`` names the file in errors."""
    def in_file(key: str) -> str:
        return f"{source}:{_line_of(source, key)}: field '{key}'" if source else f"training config: field '{key}'"

    unknown = sorted(set(overrides or {}) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown run setting(s) {unknown}; choose from {sorted(SETTINGS)}")
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    given = _checked(given, SETTINGS, lambda key: f"override --{key.replace('_', '-')}")
    values = {**_saved(config, tokenizer, in_file), **given}
    names = {f.name for f in fields(ViewConfig)} - {"chat_template", "build_views"}
    kwargs = {k: values[k] for k in names if k in values}
    try:
        view = ViewConfig(chat_template=not values.get("plain_text", False), **kwargs)
    except ValueError as e:  # a value outside its choices or range
        bad = next((k for k in sorted(kwargs) if str(e).startswith(k + " ")), "")
        raise ValueError(f"{_where(bad, given, in_file)}: {e}") from None
    from .modeling import DTYPE_CHOICES

    dtype = values.get("dtype", "auto")
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"{_where('dtype', given, in_file)}: must be one of {DTYPE_CHOICES}, got {dtype!r}")
    return view, dtype


def _saved(config: Mapping[str, Any] | None, tokenizer: Any, in_file: Any) -> dict[str, Any]:
    """The settings a run's saved options say (checked), or those of a model that has none."""
    if not config:
        has_template = bool(getattr(tokenizer, "chat_template", None)) if tokenizer is not None else True
        return {"predictors": 0, "plain_text": not has_template}
    from .config import is_baseline  # the one rule for "a baseline"

    saved = {**LEGACY, **_checked(config, {**SETTINGS, **_BASELINE}, in_file)}
    if is_baseline(saved):
        saved["predictors"] = 0  # a baseline never trained its predictor tokens
    return saved


def _where(key: str, given: Mapping[str, Any], in_file: Any) -> str:
    if not key:
        return "run settings"
    return f"override --{key.replace('_', '-')}" if key in given else in_file(key)


def load_run(name_or_path: str | Path, *, weights: bool = True, device: str | None = None,
             **overrides: Any) -> TrainedRun:
    """Load a trained run (or any causal LM): tokenizer with its predictor tokens, the settings it was
    trained with (``llm_jepa_config.yaml``, then ``overrides``) and, with ``weights``, the model in eval
    mode on ``device``. Raises before loading weights when a setting cannot work (e.g. a chat template
    asked of a tokenizer without one)."""
    from .modeling import load_tokenizer

    name = str(name_or_path)
    config, source = read_run_config(name)
    tok = load_tokenizer(name, plain_text=True)  # the chat-template check needs the resolved setting
    view, dtype = resolve_view(config, overrides, tok, source)
    if view.chat_template and not getattr(tok, "chat_template", None):
        raise ValueError(f"{name}: the tokenizer has no chat template; read the model as plain text (--plain-text)")
    run = TrainedRun(name=name, tokenizer=tok, view=view, dtype=dtype, config=_with_term_settings(config, overrides))
    if weights:
        run.load_weights(device)
    return run


def in_memory_run(model: Any, tokenizer: Any, config: Mapping[str, Any] | None = None,
                  **overrides: Any) -> TrainedRun:
    """A model already in memory (e.g. during training) with the settings of ``config`` (its training
    options, e.g. a :class:`~llm_jepa.config.JepaConfig`'s) and ``overrides``."""
    if config is not None and not isinstance(config, Mapping):
        config = {k: getattr(config, k) for k in (*SETTINGS, *_BASELINE) if hasattr(config, k)}
    view, dtype = resolve_view(config, overrides, tokenizer)
    return TrainedRun(name="<in memory>", tokenizer=tokenizer, view=view, dtype=dtype,
                      config=_with_term_settings(config, overrides), model=model)


def split_settings(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(run settings, everything else) of a flat mapping such as a sweep file's ``eval:`` section."""
    settings = {k: v for k, v in options.items() if k in SETTINGS}
    return settings, {k: v for k, v in options.items() if k not in SETTINGS}


# ---- command-line flags (eval, analyze) -----------------------------------------------------------
def _offset(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


#: the short help of each setting's eval/analyze flag (without one: the training option's help)
_FLAG_HELP = {
    "plain_text": "the model reads plain text (request + separator), not its chat template",
    "separator": "plain text: what joins request and answer",
    "predictor_position": "where the predictor tokens go in the source view",
    "predictor_order": "order of k >= 2 predictor tokens (train --help: predictor_order)",
    "direction": "which view carries the predictors",
    "anchor_offset": "anchor = view length + N (the paper's -2)",
    "view_system": "system turn of a view rendered alone (train --help: view_system)",
    "max_length": "tokens per view (longer views lose the start of their content)",
    "dtype": "weights dtype: auto (as saved), float32, bfloat16 or float16",
}


def _flag(name: str, types: tuple[type, ...]) -> dict[str, Any]:
    """The argparse options of a setting's flag, from its training field (type and choices)."""
    from .config import config_class

    f = config_class().__dataclass_fields__[name]
    kwargs: dict[str, Any] = {"help": _FLAG_HELP.get(name, f.metadata.get("help"))}
    if bool in types:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif int in types:
        kwargs.update(type=_offset, metavar="N|none") if type(None) in types else kwargs.update(type=int)
    if f.metadata.get("choices") is not None:
        kwargs["choices"] = tuple(f.metadata["choices"])
    return kwargs


def _flags() -> dict[str, dict[str, Any]]:
    """setting -> argparse options, for the run settings of the terms registered now; every default is
    None: "take it from the run". --predictors is added by the caller (one k for eval, one per model
    for analyze)."""
    return {name: _flag(name, types) for name, types in SETTINGS.items() if name != "predictors"}


def add_run_arguments(parser: argparse.ArgumentParser, predictors: dict[str, Any]) -> None:
    """Flags that override a run's saved settings; ``predictors``: the argparse options of ``--predictors``
    (one k for eval, one per model for analyze)."""
    group = parser.add_argument_group(
        "run settings", "default: what each model's llm_jepa_config.yaml says (defaults for a model without one)")
    from .spelling import public_aliases

    group.add_argument("--predictors", *public_aliases("predictors"), default=None, metavar="K", **predictors)
    for name, kwargs in _flags().items():
        group.add_argument("--" + name.replace("_", "-"), *public_aliases(name), default=None, **kwargs)


def run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings given on the command line (an int ``--predictors`` included)."""
    out = {k: getattr(args, k) for k in _flags() if getattr(args, k, None) is not None}
    if isinstance(getattr(args, "predictors", None), int):
        out["predictors"] = args.predictors
    return out
