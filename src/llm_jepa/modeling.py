"""Model and tokenizer: load any Hugging Face causal LM, add the predictor tokens, LoRA, pretraining."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .realmodel import resolve_model_path
from .views import PREDICTOR_TOKENS

__all__ = [
    "check_model_path", "load_tokenizer", "load_model", "add_predictor_tokens", "resolve_isolation", "resolve_pack_length", "save_model",
    "choose_attention", "resolve_attention", "flex_attention_available", "DTYPE_CHOICES", "adapter_base",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *_DTYPES)  # "auto": the dtype the checkpoint was saved in


def add_predictor_tokens(tokenizer: Any) -> list[int]:
    """Make ``<|predictor_1|>``..``<|predictor_10|>`` single special tokens (reused if present, as in
    the paper's released checkpoints). Returns their ids."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in PREDICTOR_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(list(PREDICTOR_TOKENS))


def check_model_path(name: Any) -> None:
    """Fail fast, before anything is written, on a model that :func:`load_tokenizer` /
    :func:`load_model` cannot load: a local-looking path that does not exist, a directory without a
    model (``config.json``, or ``adapter_config.json`` for a LoRA adapter run) or tokenizer files, or
    a hub name that is not cached while the hub is unreachable (one line, naming the offline
    alternatives, instead of transformers' ~50 s of retries; see :mod:`llm_jepa.hub`)."""
    from .hub import require_loadable
    from .realmodel import NAMED_MODELS, offline_models

    if not name:
        raise ValueError("no model given (--model NAME_OR_DIR)")
    name = str(name)
    path = Path(name).expanduser()
    if name in NAMED_MODELS:
        return  # a packaged model: resolve_model_path finds its file or says how to install it
    if not path.exists():
        require_loadable(name, "model", "--model", alternatives=offline_models(name))
        return
    if not path.is_dir():
        _refuse_model_file(path)
        return
    if not any((path / f).is_file() for f in ("config.json", "adapter_config.json")):
        raise FileNotFoundError(f"{path}: no config.json (nor adapter_config.json) in this model directory (--model)")
    if not any(path.glob("tokenizer*")):
        raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in this directory")


def _refuse_model_file(path: Path) -> None:
    """A model is a folder (or a ``.gguf`` file): a weights or config file inside one is named with
    the folder to pass instead (transformers would fail on it with a raw OSError traceback)."""
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ValueError(f"{path}: a file, not a model folder (--model takes the folder that holds config.json "
                         f"and the weights, here {path.parent}, or a .gguf file)")


def load_tokenizer(name_or_path: str, plain_text: bool = False) -> Any:
    from transformers import AutoTokenizer

    name_or_path = resolve_model_path(name_or_path)  # a named model or .gguf file -> its converted checkpoint
    path = Path(name_or_path)
    _refuse_model_file(path)
    if path.is_dir() and not any(path.glob("tokenizer*")):
        raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json) in this directory")
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if not plain_text and not getattr(tok, "chat_template", None):
        raise ValueError(f"{name_or_path}: the tokenizer has no chat template; use --plain_text")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    add_predictor_tokens(tok)
    return tok


def load_model(
    name_or_path: str,
    tokenizer: Any,
    *,
    pretrain: bool = False,
    dtype: str = "auto",
    attn_implementation: str | None = None,
    seed: int = 0,
) -> Any:
    """Load a causal LM (or build it from its config with random weights when ``pretrain``) and
    grow its embeddings to fit the predictor tokens. A LoRA adapter directory (a run saved with
    ``--lora_save adapter``) is loaded onto its base model and merged. The one loader for training,
    evaluation and analysis (through :func:`llm_jepa.runs.load_run`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    name_or_path = resolve_model_path(name_or_path)  # a named model or .gguf file -> its converted checkpoint
    kwargs: dict[str, Any] = {}
    if attn_implementation and attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    if dtype not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {DTYPE_CHOICES}, got {dtype!r}")
    torch_dtype = _DTYPES.get(dtype, "auto")
    if pretrain:
        config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, **kwargs)
        if torch_dtype != "auto":
            model = model.to(torch_dtype)
    elif (Path(name_or_path) / "adapter_config.json").is_file():
        from peft import PeftModel

        base = AutoModelForCausalLM.from_pretrained(adapter_base(name_or_path), dtype=torch_dtype, **kwargs)
        if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(len(tokenizer))  # as peft's AutoPeftModel does, to the run's tokenizer
        model = PeftModel.from_pretrained(base, name_or_path).merge_and_unload()
        model.requires_grad_(True)  # peft froze the base weights; merged, they train like any checkpoint's
    else:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=not pretrain)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if attn_implementation == "auto":
        choose_attention(model)
    return model


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model a LoRA adapter directory is merged into: the one its run's config records
    (``llm_jepa_config.yaml`` holds it resolved), else ``adapter_config.json``'s name. A relative name
    there is read from the working directory, as peft would, which may be another model than the one
    trained: it is refused when no such folder exists here, and warned about when one does."""
    import json

    import yaml

    run_config = Path(adapter_dir) / "llm_jepa_config.yaml"
    saved = (yaml.safe_load(run_config.read_text()) or {}) if run_config.is_file() else {}
    if saved.get("model_name_or_path"):
        return resolve_model_path(str(saved["model_name_or_path"]))
    base = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir}: the adapter names no base model (adapter_config.json)")
    if Path(base).is_absolute():
        return base
    if Path(base).exists():  # a hub name never exists as a folder here; a relative local path might be another
        log.warning("%s: the adapter's base %r is a relative path; reading it from %s", adapter_dir, base, Path.cwd())
    elif base.startswith(".") or base.count("/") > 1:
        raise FileNotFoundError(f"{adapter_dir}: the adapter's base model {base!r} is a relative path that does not "
                                "exist from this directory; run from the directory it was trained in")
    return base


def _resolve_adapter_base(model: Any) -> None:
    """Record a local base model's absolute path in the adapter config, so that the saved adapter
    finds its base from any directory (``--model ckpt`` saved ``base_model_name_or_path: ckpt``)."""
    for config in getattr(model, "peft_config", {}).values():
        base = getattr(config, "base_model_name_or_path", None)
        if base and Path(base).exists():
            config.base_model_name_or_path = str(Path(base).resolve())


def flex_attention_available() -> bool:
    """PyTorch >= 2.5 ships flex attention (``torch.nn.attention.flex_attention``)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None
    except ModuleNotFoundError:  # torch.nn.attention itself is missing (torch < 2.2)
        return False


def resolve_attention(requested: str | None, device: Any = None, dtype: Any = None) -> str:
    """The attention backend ``requested`` means on ``device`` (default: CUDA when available) with
    weights of ``dtype``; anything but 'auto' is returned as given.

    'auto' chooses a variable-length backend on CUDA, so packed rows need no dense L x L mask:
    flash_attention_2 when the flash-attn package is installed and the weights are bf16/fp16;
    else flex_attention, whose block mask transformers builds from the restarting position ids
    (one H200 measurement: the one-row packed layout as fast as the plain packed step, where sdpa
    needed short rows; docs/benchmarks.md); sdpa only where flex is missing (torch < 2.5) and on
    CPU, where flex attention has no backward.
    """
    import importlib.util

    if requested not in (None, "auto"):
        return requested
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    if not cuda:
        return "sdpa"
    if dtype in (torch.bfloat16, torch.float16) and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "flex_attention" if flex_attention_available() else "sdpa"


def choose_attention(model: Any, device: Any = None) -> str:
    """``--attn_implementation auto`` on a loaded model: switch it to :func:`resolve_attention`'s
    choice; a model family without that backend keeps its default. Returns the backend in use."""
    current = model.config._attn_implementation
    wanted = resolve_attention("auto", device, getattr(model, "dtype", None))
    if wanted != current:
        try:
            model.set_attn_implementation(wanted)
        except (ImportError, ValueError) as e:  # e.g. a model family without flex/flash support
            log.info("%s unavailable (%s); keeping %s", wanted, e, current)
    return model.config._attn_implementation


def apply_lora(model: Any, tokenizer: Any, r: int, alpha: float, dropout: float, targets: list[str],
               modules_to_save: list[str] | None = None) -> Any:
    """Wrap ``model`` with LoRA adapters; the predictor-token embeddings stay trainable too, and
    ``modules_to_save`` (e.g. the STP predictor) are trained in full and saved in the adapter."""
    from peft import LoraConfig, get_peft_model

    target: Any = targets[0] if targets == ["all-linear"] else targets
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        trainable_token_indices=list(tokenizer.convert_tokens_to_ids(list(PREDICTOR_TOKENS))),
        modules_to_save=modules_to_save,
    )
    model = get_peft_model(model, config)
    _resolve_adapter_base(model)
    return model


def resolve_isolation(model: Any, isolation: str) -> str:
    """'auto' -> 'position_ids' for backends that derive segment isolation from restarting position
    ids in transformers >= 5 (sdpa, eager, flash, flex); 'explicit' for anything else."""
    if isolation != "auto":
        return isolation
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    native = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
    return "position_ids" if impl in native or impl.startswith("kernels-community/flash") else "explicit"


def resolve_pack_length(model: Any, pack_length: int) -> int:
    """-1 (auto) -> 0 (one row) for variable-length backends (flash / flex attention, which skip
    masked blocks); dense-mask backends keep -1, resolved per batch by the collator."""
    if pack_length != -1:
        return pack_length
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None) or ""
    return 0 if ("flash" in impl or impl == "flex_attention") else -1


def save_model(model: Any, tokenizer: Any, output_dir: str | Path, merge_lora: bool = False) -> None:
    """Save weights (LoRA as adapter, or merged) and the tokenizer with its predictor tokens."""
    if merge_lora and hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
