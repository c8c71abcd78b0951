"""A tiny local model (demo, benchmark, tests): a BPE tokenizer trained on the data, a small Llama.

No hub access is needed: :func:`build_checkpoint` trains a byte-level BPE tokenizer on the given
texts, initialises a :class:`~transformers.LlamaForCausalLM` from a seeded RNG and saves both, so
that ``AutoTokenizer.from_pretrained(out)`` and ``AutoModelForCausalLM.from_pretrained(out)`` load
them like any downloaded checkpoint.

Heavy libraries (torch, transformers, tokenizers) are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ..views import PREDICTOR_TOKENS

if TYPE_CHECKING:
    from transformers import LlamaConfig, PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "IM_START",
    "IM_END",
    "CHATML_TEMPLATE",
    "SIZES",
    "train_tokenizer",
    "tiny_llama_config",
    "build_checkpoint",
]

EOS_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

#: ChatML: every turn is ``<|im_start|>role\ncontent<|im_end|>\n``. The assistant's content and
#: its ``<|im_end|>`` sit in a ``{% generation %}`` block so that
#: ``apply_chat_template(..., return_assistant_tokens_mask=True)`` can find the answer tokens.
CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' -%}"
    "{%- generation -%}{{- message['content'] + '<|im_end|>' -}}{%- endgeneration -%}"
    "{{- '\\n' -}}"
    "{%- else -%}"
    "{{- message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

#: name -> (hidden_size, num_layers, num_heads); every preset has head_dim 32 or 64.
SIZES: dict[str, tuple[int, int, int]] = {
    "micro": (64, 2, 2),  # for tests: builds and runs in milliseconds
    "tiny": (256, 4, 4),  # the demo's default: ~4.3M parameters with a 512-token vocabulary
    "small": (384, 6, 6),
}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, *, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts``; returns a transformers fast tokenizer.

    Special tokens (each a single id, never split): ``<|endoftext|>`` (bos, eos and pad),
    ``<|im_start|>``, ``<|im_end|>`` and ``<|predictor_1|>`` .. ``<|predictor_10|>``. Nothing is
    added automatically on encode; the chat template writes the markers. ``vocab_size`` is an upper
    bound: the vocabulary stops growing once no pair occurs ``min_frequency`` times, which on a
    small grammar happens well below 1024.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [EOS_TOKEN, IM_START, IM_END, *PREDICTOR_TOKENS]
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size must cover 256 bytes + {len(specials)} special tokens, got {vocab_size}"
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        extra_special_tokens=[IM_START, IM_END, *PREDICTOR_TOKENS],
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_llama_config(
    vocab_size: int,
    *,
    size: str = "tiny",
    hidden_size: int | None = None,
    num_layers: int | None = None,
    num_heads: int | None = None,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 1024,
    bos_token_id: int | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
) -> LlamaConfig:
    """A small Llama config from a preset in :data:`SIZES`; explicit arguments override the preset.

    ``intermediate_size`` defaults to 4 x hidden. Input and output embeddings are tied, which
    matters at this scale: with a 1k vocabulary and hidden 256 they are ~7% of the parameters.
    """
    from transformers import LlamaConfig

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(SIZES)}")
    preset_hidden, preset_layers, preset_heads = SIZES[size]
    hidden = hidden_size or preset_hidden
    heads = num_heads or preset_heads
    if hidden % heads:
        raise ValueError(f"hidden_size {hidden} is not divisible by num_heads {heads}")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate_size or 4 * hidden,
        num_hidden_layers=num_layers or preset_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )


def build_checkpoint(
    out_dir: str | Path,
    texts: Iterable[str],
    *,
    seed: int = 0,
    size: str = "tiny",
    vocab_size: int = 1024,
    overwrite: bool = False,
) -> Path:
    """Train a tokenizer on ``texts``, initialise a seeded Llama of ``size`` and save both to ``out_dir``.

    The model's generation config stops on ``<|im_end|>`` (end of an assistant turn) as well as on
    ``<|endoftext|>``. Refuses a non-empty ``out_dir`` unless ``overwrite``. Returns ``out_dir``.
    """
    import torch
    from transformers import LlamaForCausalLM

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace its checkpoint")
    tok = train_tokenizer(texts, vocab_size)
    config = tiny_llama_config(
        len(tok),
        size=size,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [tok.convert_tokens_to_ids(IM_END), tok.eos_token_id]
    model.generation_config.pad_token_id = tok.pad_token_id
    tok.model_max_length = config.max_position_embeddings  # so truncation knows the context length
    out.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out
