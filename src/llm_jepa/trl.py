"""LLM-JEPA and Semantic Tube Prediction inside TRL: ``JepaSFTConfig`` and ``JepaSFTTrainer``.

An existing ``trl.SFTTrainer`` script gets STP by changing the trainer class and setting
``stp_lambda``::

    from llm_jepa.trl import JepaSFTConfig, JepaSFTTrainer
    args = JepaSFTConfig(output_dir="out", jepa_lambda=0, stp_lambda=0.02)
    JepaSFTTrainer(model="smollm2-135m-instruct", args=args, train_dataset=ds).train()

What TRL does stays TRL's: reading conversational, prompt/completion and text datasets, the chat
template, ``assistant_only_loss`` / ``completion_only_loss`` labels, truncation, packing. The trainer
hooks in at three places only. Dataset preparation runs TRL's own (without packing), then adds per
token the row it came from and, for STP, which turn's content it is (found from the template's
character offsets); JEPA's views are built per row by llm-jepa's :class:`~llm_jepa.views.ViewBuilder`.
Packing is TRL's ``pack_dataset`` over those columns too. The collator turns each document of a
batch (a row, or each packed document) into an llm-jepa segment and packs documents and views with
:class:`~llm_jepa.collator.PackingCollator`, so documents never attend to each other and STP spans
never cross a document boundary; the loss is :func:`llm_jepa.objective.compute_objective`.

The objective's options are the training CLI's, under the same names, defaults, help and checks:
the fields of :class:`~llm_jepa.config.JepaConfig` that configure the objective, the views and STP
(:func:`objective_fields`), copied from their declarations. ``JepaSFTConfig`` is built at its first use
(module ``__getattr__``) with the terms registered by then; :func:`jepa_sft_config_class` gives the
class for the terms registered now (docs/trl.md, "Terms registered by a plug-in").
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

try:
    import trl
    from trl import SFTConfig, SFTTrainer
except ImportError as e:  # the optional extra
    raise ImportError("llm_jepa.trl needs TRL: pip install 'llm-jepa[trl]'") from e

import torch

from .collator import PackingCollator
from .config import ConfigError, JepaConfig, _derive, _ranges, config_class, refuse_unused_options
from .data import example_from_row
from .objective import TERMS, ObjectiveConfig, compute_objective
from .views import IGNORE, Segment, TokenizedExample, ViewBuilder, ViewConfig, turn_char_spans

__all__ = ["JepaSFTConfig", "JepaSFTOptions", "JepaSFTTrainer", "jepa_sft_config_class",  # noqa: F822 (__getattr__)
           "objective_fields", "REFUSED"]

VIEWS = "llm_jepa_views"  # per row: its view pairs (JSON), moved into the trainer's table
ROW = "llm_jepa_row"  # per token: the (unique) row its document came from
TURN = "llm_jepa_turn"  # per token: the index of the turn whose content it is, -1 for template tokens
#: options of the objective TRL owns or that do not apply: labels come from TRL's masks, max_length is
#: SFTConfig's, segments are isolated by position ids, the chat template is always used
_NOT_COPIED = {"isolation", "terms", "stp", "max_length", "chat_template", "build_views", "separator",
               "label_mode", "stp_weight"}


def objective_fields() -> list[dataclasses.Field]:
    """The fields of :class:`JepaConfig` that configure the objective, its views and STP: those named
    like a field of ``ObjectiveConfig`` / ``ViewConfig``, the options of every registered term (STP's ``stp_*``), the
    weight of a registered term, and ``loss_dropout``."""
    names = {f.name for cls in (ObjectiveConfig, ViewConfig) for f in fields(cls)}
    names |= {f.name for t in TERMS.values() if t.options is not None for f in fields(t.options)}
    names |= {t.weight_field for t in TERMS.values()}
    names = (names | {"loss_dropout"}) - _NOT_COPIED
    return [f for f in fields(config_class()) if f.name in names]


def _type_hints() -> dict[str, Any]:
    """The resolved annotations of every option :func:`objective_fields` may copy (JepaConfig's and
    each registered term's options dataclass)."""
    hints = dict(typing.get_type_hints(JepaConfig))
    for term in TERMS.values():
        if term.options is not None:
            hints.update(typing.get_type_hints(term.options))
    return hints


def _copied(f: dataclasses.Field, hints: dict[str, Any]) -> tuple[str, Any, dataclasses.Field]:
    meta = {k: f.metadata[k] for k in f.metadata.keys() if k != "aliases"}  # one public name in Python; the
    # option roles stay with llm-jepa's own class (third-party parsers pass every metadata key to argparse)
    if f.default_factory is not dataclasses.MISSING:
        new = dataclasses.field(default_factory=f.default_factory, metadata=meta)
    else:
        new = dataclasses.field(default=f.default, metadata=meta)
    return f.name, hints[f.name], new


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` has a type the option's annotation names, as the CLI's parser would convert it
    (an int is a float; a bool is neither an int nor a float; unchecked: Any, Literal, containers' items)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    for t in typing.get_args(hint) if union else (hint,):
        t = typing.get_origin(t) or t
        if not isinstance(t, type) or (t is type(None) and value is None):
            return True
        if t in (int, float) and isinstance(value, bool):
            continue
        if isinstance(value, (int, float) if t is float else t):
            return True
    return False


def _post_init(self) -> None:
    """The training CLI's checks (``JepaConfig.__post_init__``) over the options this class copied:
    types, choices, ranges (finite), every term's own options (also while it is off), the workers."""
    import math

    from .config import _has_accelerator

    if not self.use_cpu and not _has_accelerator():  # as llm-jepa train does: CPU-only machines say so
        self.use_cpu = True
    SFTConfig.__post_init__(self)
    names, hints = type(self)._llm_jepa_fields, type(self)._llm_jepa_hints
    for name in names:
        if not _accepts(hints[name], getattr(self, name)):
            kind = hints[name].__name__ if isinstance(hints[name], type) else str(hints[name])
            raise ConfigError(f"{name} must be {kind}, got {getattr(self, name)!r}")
    for f in fields(self):  # the CLI's choices, from the same declarations
        choices = f.metadata.get("choices") if f.name in names else None
        if choices is not None and getattr(self, f.name) not in choices:
            raise ConfigError(f"{f.name} must be one of {list(choices)}, got {getattr(self, f.name)!r}")
    for name, ok, what in _ranges(config_class()):
        value = getattr(self, name, None)
        if name in names and ((isinstance(value, float) and not math.isfinite(value)) or not ok(value)):
            raise ConfigError(f"{name} must be {what}, got {value}")
    if self.gamma == 0 and self.jepa_lambda == 0:
        raise ConfigError("gamma and jepa_lambda are both 0: the objective is empty")
    if self.loss_dropout > 0 and self.dataloader_num_workers > 0:
        raise ConfigError("loss_dropout needs dataloader_num_workers=0 (decisions are seeded by the step)")
    try:
        self.view_config(), self.term_settings()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    self._check_terms()  # every term's options (on or off) and a collate term's workers, as the CLI
    refuse_unused_options(self, names)  # an option set while its switch is off does nothing, as the CLI


def _reduce(self) -> tuple:
    # a class built per set of terms: pickle (the Trainer's training_args.bin) and deepcopy rebuild it
    # from today's registry, not by its name (which names the class of the terms at first use)
    return (_restore, (self.__dict__.copy(),))


def _restore(state: dict[str, Any]) -> Any:
    cls = jepa_sft_config_class()
    cfg = cls.__new__(cls)
    cfg.__dict__.update(state)
    return cfg


def _uses_views(self) -> bool:
    return self.jepa_lambda > 0 and self.loss_dropout < 1.0


def _view_config(self) -> ViewConfig:
    return _derive(ViewConfig, self, chat_template=True, build_views=self.uses_views,
                   max_length=self.max_length or ViewConfig.max_length)


def _objective_config(self) -> ObjectiveConfig:
    return _derive(ObjectiveConfig, self, isolation="position_ids", terms=self._term_weights(),
                   term_settings=self.term_settings())


class JepaSFTOptions:
    """The base of every ``JepaSFTConfig`` class (one per set of registered terms): ``isinstance(args,
    JepaSFTOptions)`` tells any of them."""


def _make_config() -> type:
    hints = _type_hints()
    copied = objective_fields()
    namespace = {
        "__post_init__": _post_init,
        "__reduce__": _reduce,
        "__doc__": "``trl.SFTConfig`` plus llm-jepa's objective options (``jepa_lambda``, ``predictors``, "
                   "``distance``, ``stp_lambda``, ...), with the training CLI's names, defaults and checks.",
        "_llm_jepa_fields": frozenset(f.name for f in copied),
        "_llm_jepa_hints": {f.name: hints[f.name] for f in copied},
        "uses_views": property(_uses_views),
        "view_config": _view_config,
        "term_options": JepaConfig.term_options,
        "term_settings": JepaConfig.term_settings,
        "_term_weights": JepaConfig._term_weights,
        "_check_terms": JepaConfig._check_terms,
        "objective_config": _objective_config,
    }
    cls = dataclasses.make_dataclass("JepaSFTConfig", [_copied(f, hints) for f in copied],
                                     bases=(JepaSFTOptions, SFTConfig), namespace=namespace)
    cls.__module__ = __name__
    return cls


_CLASSES: dict[tuple[type, ...], type] = {}


def jepa_sft_config_class() -> type:
    """The ``JepaSFTConfig`` class for the objective terms registered now: ``SFTConfig`` plus the options
    of :func:`objective_fields`. Built once per set of terms (as :func:`llm_jepa.config.config_class`)."""
    key = tuple(dict.fromkeys(t.options for t in TERMS.values() if t.options is not None))
    if key not in _CLASSES:
        _CLASSES[key] = _make_config()
    return _CLASSES[key]


def __getattr__(name: str) -> Any:
    # ``JepaSFTConfig`` is built at its first use, not at import: a term registered after
    # ``import llm_jepa.trl`` but before it is its options' class. A term registered after that first
    # use is off in that class (its checks and weight are skipped); jepa_sft_config_class() has it.
    if name == "JepaSFTConfig":
        globals()[name] = jepa_sft_config_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: TRL options this trainer cannot honour: (option, is it set?, why)
REFUSED: tuple[tuple[str, Any, str], ...] = (
    ("loss_type", lambda a: a.loss_type != "nll", "the loss is llm-jepa's objective (its LM term is 'nll')"),
    ("use_liger_kernel", lambda a: a.use_liger_kernel, "the objective runs the model's own forward"),
    ("label_smoothing_factor", lambda a: a.label_smoothing_factor > 0, "the LM term is plain cross-entropy"),
    ("router_aux_loss_coef", lambda a: bool(a.router_aux_loss_coef), "the objective adds no MoE auxiliary loss"),
    ("packing_strategy", lambda a: a.packing and a.packing_strategy == "wrapped" and (a.uses_views or a.stp_lambda),
     "'wrapped' cuts documents and lets them attend to each other; use 'bfd'"),
    ("packing_strategy", lambda a: a.packing and a.packing_strategy == "bfd_split" and a.uses_views,
     "'bfd_split' splits a document from its views; use 'bfd'"),
)


def _refuse(args: Any, **given: Any) -> None:
    """A clear error for every TRL option or argument the trainer cannot honour (never ignored)."""
    for name, is_set, why in REFUSED:
        if is_set(args):
            raise ValueError(f"JepaSFTTrainer does not support {name}={getattr(args, name)!r}: {why}")
    needs_rows = args.uses_views or args.stp_lambda
    for name, value in given.items():
        if value is not None and (name != "formatting_func" or needs_rows):
            raise ValueError(f"JepaSFTTrainer does not support {name}: "
                             + {"formatting_func": "JEPA's views and STP need the dataset's own fields",
                                "quantization_config": "the model is loaded by llm-jepa's loader; quantize it yourself and "
                                                       "pass the model"}.get(name, "its loss and batches are llm-jepa's "
                                                                                "objective and packing collator"))
    if needs_rows and (args.dataset_num_proc or 1) > 1:
        raise ValueError("JepaSFTTrainer does not support dataset_num_proc > 1 with JEPA or STP yet")
    if needs_rows and (args.dataset_kwargs or {}).get("skip_prepare_dataset"):
        raise ValueError("JepaSFTTrainer does not support dataset_kwargs skip_prepare_dataset with JEPA or STP: "
                         "they need the dataset's messages/prompt/completion/text fields")


# ---- turn content: which tokens of TRL's tokenization are each turn's content ---------------------------
def _rendered(tok: Any, row: dict, text_field: str, template_kwargs: dict) -> tuple[str, list[tuple[int, int]], bool]:
    """The text TRL tokenizes for ``row``, the character span of each turn's content in it, and
    whether it went through the chat template (conversational) or the tokenizer alone (special tokens added)."""
    eos = tok.eos_token or ""
    if "prompt" in row and isinstance(row["prompt"], str):
        prompt, completion = row["prompt"], row["completion"]
        return prompt + completion, [(0, len(prompt)), (len(prompt), len(prompt + completion.removesuffix(eos)))], False
    if "prompt" not in row and "messages" not in row:
        text = row[text_field]
        return text, [(0, len(text.removesuffix(eos)))], False
    messages = list(row["prompt"]) + list(row["completion"]) if "prompt" in row else list(row["messages"])

    def render(msgs: list[dict]) -> str:
        return tok.apply_chat_template(msgs, tokenize=False, **template_kwargs)

    text = render(messages)
    return text, [(a, b) for a, b, _ in turn_char_spans(render, messages, text)], True


def turn_of_tokens(tok: Any, row: dict, input_ids: list[int], text_field: str = "text",
                   template_kwargs: dict | None = None, where: str = "") -> list[int]:
    """Per token of ``input_ids`` (TRL's tokenization of ``row``, possibly truncated at either end),
    the index of the user/assistant turn whose content it is, or -1 (template tokens)."""
    text, spans, chat = _rendered(tok, row, text_field, template_kwargs or {})
    enc = tok(text, add_special_tokens=not chat, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    n = len(input_ids)
    shift = 0 if ids[:n] == list(input_ids) else len(ids) - n if ids[len(ids) - n:] == list(input_ids) else None
    if shift is None:
        raise ValueError(f"{where}: the template's rendering does not tokenize to TRL's input_ids, so STP cannot "
                         "find each turn's content (a chat_template_kwargs or tools difference?)")
    owner = [-1] * len(ids)
    for t, (start, end) in enumerate(spans):
        for i, (s, e) in enumerate(offsets):
            if s < end and e > start and e > s and owner[i] < 0:  # a token shared by two turns: the earlier
                owner[i] = t
    return owner[shift:shift + n]


def _content(turn: list[int]) -> tuple[tuple[int, int], ...]:
    """Token ranges [first, end) of each turn in one document, from its per-token turn index."""
    ranges: dict[int, list[int]] = {}
    for i, t in enumerate(turn):
        if t >= 0:
            ranges.setdefault(t, [i, i + 1])[1] = i + 1
    return tuple(tuple(ranges[t]) for t in sorted(ranges))


class _Overrides:
    """``args`` with a few attributes replaced (for one call of TRL's preparation)."""

    def __init__(self, args: Any, **values: Any) -> None:
        self._args, self._values = args, values

    def __getattr__(self, name: str) -> Any:
        return self._values[name] if name in self._values else getattr(self._args, name)


class JepaSFTCollator:
    """Documents of TRL-prepared examples (a row, or each document of a packed row) plus the views of
    their rows, packed by :class:`PackingCollator` (position ids restart at every segment)."""

    def __init__(self, collator: PackingCollator, views: dict[int, list], stp: bool) -> None:
        self.inner, self.views, self.stp = collator, views, stp

    def set_position(self, micro_batch: int) -> None:
        self.inner.set_position(micro_batch)

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def documents(self, example: dict[str, Any]) -> list[TokenizedExample]:
        ids, labels = list(example["input_ids"]), list(example.get("labels", example["input_ids"]))
        lengths = example.get("seq_lengths") or [len(ids)]
        out, start = [], 0
        for n in lengths:
            end = start + n
            row = example[ROW][start] if ROW in example else -1
            seg = Segment(input_ids=ids[start:end], labels=[IGNORE, *labels[start + 1:end]],  # as TRL: no target
                          content=_content(example[TURN][start:end]) if self.stp else None)  # across documents
            out.append(TokenizedExample(lm=[seg], pairs=self.views.get(row, []), source=("trl", row)))
            start = end
        return out

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return self.inner([doc for ex in examples for doc in self.documents(ex)])


class JepaSFTTrainer(SFTTrainer):
    """``trl.SFTTrainer`` whose loss is llm-jepa's objective (:func:`compute_objective`).

    ``model`` may be a name llm-jepa knows (``smollm2-135m-instruct``), a path or hub name (loaded
    with llm-jepa's loader, which adds the predictor tokens), or a model object."""

    _tag_names = ["trl", "sft", "llm-jepa"]

    def __init__(self, model: Any, args: Any = None, data_collator: Any = None, train_dataset: Any = None,
                 eval_dataset: Any = None, processing_class: Any = None, compute_loss_func: Any = None,
                 formatting_func: Any = None, peft_config: Any = None, **kwargs: Any) -> None:
        if not isinstance(args, JepaSFTOptions):
            raise TypeError("JepaSFTTrainer needs args=JepaSFTConfig(...) (llm_jepa.trl)")
        _refuse(args, data_collator=data_collator, compute_loss_func=compute_loss_func,
                formatting_func=formatting_func, quantization_config=kwargs.get("quantization_config"))
        model, processing_class = self._load(model, processing_class, args, peft_config)
        self._views: dict[int, list] = {}
        self._rows = 0  # row ids are unique across the train and eval datasets
        self._builder = ViewBuilder(processing_class, args.view_config()) if args.uses_views else None
        super().__init__(model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, formatting_func=formatting_func,
                         peft_config=peft_config, **kwargs)
        if self._is_vision_dataset:
            raise ValueError("JepaSFTTrainer does not support vision-language datasets (TRL prepares them on the fly)")
        self.objective = args.objective_config()
        pad = self._tokenizer.pad_token_id
        pack = dict(pad_token_id=pad, pack_length=0 if self.padding_free else -1, seed=args.seed,
                    pad_to_multiple_of=args.pad_to_multiple_of or 1,
                    term_settings={k: v for k, v in args.term_settings().items() if TERMS[k].collate})
        stp = bool(args.stp_lambda)
        self.data_collator = JepaSFTCollator(PackingCollator(loss_dropout=args.loss_dropout, **pack), self._views, stp)
        self.eval_collator = JepaSFTCollator(PackingCollator(**pack), self._views, stp)
        from .trainer import StepSync

        self.add_callback(StepSync(self.data_collator))
        self.model_accepts_loss_kwargs = True  # the objective normalises by the accumulated token count

    # ---- model and tokenizer -----------------------------------------------------------------------
    @staticmethod
    def _load(model: Any, tok: Any, args: Any, peft_config: Any) -> tuple[Any, Any]:
        from .modeling import add_predictor_tokens, load_model, load_tokenizer

        if isinstance(model, str):  # llm-jepa's loader: the predictor tokens, named models, LoRA run folders
            init = dict(args.model_init_kwargs or {})
            unknown = sorted(set(init) - {"dtype", "attn_implementation"})
            if unknown:
                raise ValueError(f"JepaSFTTrainer does not support model_init_kwargs {unknown} with a model name: "
                                 "load the model yourself and pass it (with processing_class)")
            tok = tok or load_tokenizer(model)
            model = load_model(model, tok, dtype=str(init.get("dtype", "auto")),
                               attn_implementation=init.get("attn_implementation"))
            args.model_init_kwargs = None  # used here; TRL would warn that an instantiated model ignores them
        if tok is None:
            raise ValueError("JepaSFTTrainer with a model object needs processing_class (its tokenizer)")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        if args.uses_views and args.predictors:
            add_predictor_tokens(tok)
            if len(tok) > model.get_input_embeddings().weight.shape[0]:
                if hasattr(model, "peft_config"):
                    raise ValueError("the predictor tokens need new embeddings: pass the base model and peft_config "
                                     "instead of a PEFT-wrapped model")
                model.resize_token_embeddings(len(tok))
        keep = [name for term, value in args.term_settings().items() if TERMS[term].setup
                for name in TERMS[term].setup(model, value, args.seed) or []]  # STP's predictor
        if keep and peft_config is not None:  # the adapter saves (and a resume restores) them too
            peft_config.modules_to_save = [*(peft_config.modules_to_save or []), *keep]
        return model, tok

    # ---- data: TRL's preparation, plus the row and turn of every token ------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, packing, formatting_func, dataset_name):
        import datasets

        if not isinstance(dataset, datasets.Dataset):
            raise ValueError(f"JepaSFTTrainer does not take a streaming (IterableDataset) {dataset_name} dataset: it "
                             "numbers rows and collects JEPA's views over the whole dataset before training (see "
                             "docs/trl.md); stream with `llm-jepa train --data DATASET --streaming true`, or pass a "
                             "map-style Dataset (load_from_disk memory-maps it)")
        if "input_ids" in dataset.column_names and (args.uses_views or args.stp_lambda):
            raise ValueError(f"the {dataset_name} dataset is already tokenized: JEPA's views and STP need its "
                             "messages, prompt/completion or text fields")
        first = self._rows
        self._rows += len(dataset)
        dataset = dataset.add_column("llm_jepa_index", list(range(first, first + len(dataset))))
        # packing: TRL neither truncates nor filters before packing, and shuffles around it (as below)
        prepare = _Overrides(args, max_length=None, shuffle_dataset=False) if packing else args
        dataset = super()._prepare_dataset(dataset, processing_class, prepare, False, formatting_func, dataset_name)
        dataset = dataset.map(self._annotate, fn_kwargs={"name": dataset_name, "first": first, "args": args})
        if self._builder is not None:
            dataset = self._collect_views(dataset)
        if packing:  # TRL's packing, over our per-token columns too
            from trl.data_utils import pack_dataset

            if args.max_length is None:
                raise ValueError("When packing is enabled, `max_length` can't be `None`.")
            dataset = dataset.select_columns(["input_ids", "labels", ROW, *([TURN] if args.stp_lambda else [])])
            dataset = dataset.shuffle(seed=args.seed) if args.shuffle_dataset else dataset
            dataset = pack_dataset(dataset, args.max_length, args.packing_strategy, {})
            dataset = dataset.shuffle(seed=args.seed) if args.shuffle_dataset else dataset
        return dataset

    def _annotate(self, row: dict[str, Any], name: str, first: int, args: Any) -> dict[str, Any]:
        """The row id of every token, the turn of every token (STP), and the row's views (JEPA, as
        JSON: a column, not a side effect, so that cached or parallel maps keep them)."""
        index = row["llm_jepa_index"]
        where = f"{name}[{index - first}]"
        out = {ROW: [index] * len(row["input_ids"])}
        tools = json.loads(row["tools"]) if isinstance(row.get("tools"), str) else row.get("tools")  # as TRL reads it
        kwargs = {"chat_template": getattr(self, "chat_template", None), "tools": tools,
                  **(row.get("chat_template_kwargs") or {})}
        if args.stp_lambda:
            out[TURN] = turn_of_tokens(self._tokenizer, row, row["input_ids"], args.dataset_text_field, kwargs, where)
        if self._builder is not None:
            out[VIEWS] = json.dumps(self._row_views(row, args.dataset_text_field, (name, index - first)))
        return out

    def _row_views(self, row: dict[str, Any], text_field: str, source: tuple[str, int]) -> list[list]:
        """The view pairs of one raw row, as llm-jepa builds them: [[source ids, anchor, target ids, anchor], ...]."""
        given = {k: row[k] for k in ("messages", "prompt", "completion", "text", "code") if row.get(k) is not None}
        if "messages" not in given and "prompt" not in given:
            given = {"text": row[text_field]}  # a plain text row: example_from_row refuses its views by name
        if "prompt" in given and isinstance(given["prompt"], str):  # TRL appended eos to the completion
            given["completion"] = given["completion"].removesuffix(self._tokenizer.eos_token or "")
        pairs = self._builder.pairs(example_from_row(given, source))
        for pair in pairs:
            for seg in pair:
                self._builder.clip(seg)
        return [[src.input_ids, src.anchor, tgt.input_ids, tgt.anchor] for src, tgt in pairs]

    def _collect_views(self, dataset: Any) -> Any:
        """Move the views column into the table the collator reads (packing keeps per-token columns only)."""
        for index, text in zip(dataset["llm_jepa_index"], dataset[VIEWS], strict=True):
            self._views[index] = [(Segment(a, anchor=i), Segment(b, anchor=j)) for a, i, b, j in json.loads(text)]
        return dataset.remove_columns(VIEWS)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, ROW, TURN]

    # ---- loss ------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """llm-jepa's optimised loss (see :func:`compute_objective` for how each term is normalised)."""
        across = num_items_in_batch is not None and self.args.average_tokens_across_devices
        out = compute_objective(
            model, inputs, self.objective, num_items=num_items_in_batch,
            accumulation_steps=getattr(self, "current_gradient_accumulation_steps", 1) if model.training else 1,
            num_processes=self.accelerator.num_processes // self.get_tp_size() if across else 1,
        )
        self._record(out, inputs, num_items_in_batch)
        return (out.loss, out) if return_outputs else out.loss

    @torch.no_grad()
    def _record(self, out: Any, inputs: dict[str, Any], num_items: Any) -> None:
        """The terms of this micro-batch, over every process (as TRL's own metrics are): lm_loss per
        labelled token, the others averaged over processes; TRL's log averages them over micro-batches."""
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics["train" if self.model.training else "eval"]
        tokens = inputs["shift_labels"].ne(IGNORE).sum()
        whole = num_items if num_items is not None else tokens.clamp(min=1)
        total = gather((out.lm_loss.detach() * whole).reshape(1)).sum()  # summed token losses
        metrics["lm_loss"].append((total / gather(tokens.reshape(1)).sum().clamp(min=1)).item())
        values = {"jepa_loss": out.jepa_loss, **out.terms} if out.jepa_loss is not None else dict(out.terms)
        for name, value in values.items():
            metrics[name].append(gather(value.detach().float().reshape(1)).mean().item())

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation computes the objective only (no logits are gathered)."""
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        train_collator, self.data_collator = self.data_collator, self.eval_collator  # views never dropped
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.data_collator = train_collator

    # ---- saving: the settings beside the weights, for llm-jepa eval / analyze / embed ----------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.is_world_process_zero():
            write_run_config(self.args, Path(output_dir or self.args.output_dir),
                             labels_all=not (self.args.assistant_only_loss or self.completion_only_loss))


def write_run_config(args: Any, out: Path, labels_all: bool = False) -> None:
    """``llm_jepa_config.yaml``: the options a TRL run shares with ``llm-jepa train`` (the objective's,
    and the Trainer's), as ``llm-jepa train`` writes them, so ``llm-jepa eval`` rebuilds its views."""
    import yaml

    from .runs import RUN_CONFIG

    plain = (int, float, str, bool, list, type(None))
    values = {f.name: getattr(args, f.name) for f in fields(config_class()) if f.init and hasattr(args, f.name)}
    values = {k: (v.value if hasattr(v, "value") else v) for k, v in values.items()}
    values = {k: v for k, v in values.items() if isinstance(v, plain)}
    values.update(max_length=args.max_length or ViewConfig.max_length, plain_text=False,
                  label_mode="all" if labels_all else "assistant")
    out.mkdir(parents=True, exist_ok=True)
    header = f"# written by llm_jepa.trl.JepaSFTTrainer (trl {trl.__version__})\n"
    (out / RUN_CONFIG).write_text(header + yaml.safe_dump(values, sort_keys=True))
