"""Model and tokenizer: load any Hugging Face causal LM, add the predictor tokens, LoRA, pretraining."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .realmodel import resolve_model_path
from .views import PREDICTOR_TOKENS

__all__ = [
    "load_tokenizer", "load_model", "add_predictor_tokens", "resolve_isolation", "resolve_pack_length", "save_model",
    "choose_attention",
]

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_predictor_tokens(tokenizer: Any) -> list[int]:
    """Make ``<|predictor_1|>``..``<|predictor_10|>`` single special tokens (reused if present, as in
    the paper's released checkpoints). Returns their ids."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in PREDICTOR_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer.convert_tokens_to_ids(list(PREDICTOR_TOKENS))


def load_tokenizer(name_or_path: str, plain_text: bool = False) -> Any:
    from transformers import AutoTokenizer

    name_or_path = resolve_model_path(name_or_path)  # a named model or .gguf file -> its converted checkpoint
    path = Path(name_or_path)
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
    grow its embeddings to fit the predictor tokens."""
    from transformers import AutoConfig, AutoModelForCausalLM

    name_or_path = resolve_model_path(name_or_path)  # a named model or .gguf file -> its converted checkpoint
    kwargs: dict[str, Any] = {}
    if attn_implementation and attn_implementation != "auto":
        kwargs["attn_implementation"] = attn_implementation
    torch_dtype = _DTYPES.get(dtype, "auto")
    if pretrain:
        config = AutoConfig.from_pretrained(name_or_path, **kwargs)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, **kwargs)
        if torch_dtype != "auto":
            model = model.to(torch_dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=not pretrain)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if attn_implementation == "auto":
        choose_attention(model)
    return model


def choose_attention(model: Any) -> str:
    """``--attn_implementation auto``: variable-length flash attention where it can run (a CUDA GPU,
    the flash-attn package, half-precision weights), so packed rows need no L x L mask; otherwise
    the model's default (sdpa, with short packed rows). Returns the backend in use."""
    import importlib.util

    half = getattr(model, "dtype", None) in (torch.bfloat16, torch.float16)
    if torch.cuda.is_available() and half and importlib.util.find_spec("flash_attn") is not None:
        try:
            model.set_attn_implementation("flash_attention_2")
        except (ImportError, ValueError) as e:  # e.g. a model family without flash-attention support
            log.info("flash_attention_2 unavailable (%s); keeping %s", e, model.config._attn_implementation)
    return model.config._attn_implementation


def apply_lora(model: Any, tokenizer: Any, r: int, alpha: float, dropout: float, targets: list[str]) -> Any:
    """Wrap ``model`` with LoRA adapters; the predictor-token embeddings stay trainable too."""
    from peft import LoraConfig, get_peft_model

    target: Any = targets[0] if targets == ["all-linear"] else targets
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target,
        task_type="CAUSAL_LM",
        trainable_token_indices=list(tokenizer.convert_tokens_to_ids(list(PREDICTOR_TOKENS))),
    )
    return get_peft_model(model, config)


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
