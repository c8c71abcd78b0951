"""Tiny tokenizers and models built locally for tests (no hub).

Chat templates are written here by hand to produce the token layouts of common model families
(Llama-3, Gemma-2, Qwen2/ChatML, Qwen3 with thinking tags, OLMo-2, Phi-3) so anchor and label
logic is exercised on each layout.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from llm_jepa.views import PREDICTOR_TOKENS

CORPUS = [
    "lines with words containing the string 'dog' followed by a vowel",
    "Convert natural language to regular expression.",
    "[AEIOUaeiou] [a-z] [A-Z] [0-9] (.*) \\b ~ & | + * {3,}",
    "what is the answer to the question? It is 42, and 1,000 dollars.",
    "SELECT count(*) FROM city WHERE country = 'Australia'",
    "system user assistant model",
] * 20

_TURN = "{% for m in messages %}"
TEMPLATES = {
    "chatml": (
        _TURN + "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama3": (
        "<|begin_of_text|>" + _TURN + "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "gemma2": (
        "<bos>" + _TURN + "{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
        "<start_of_turn>{{ role }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    ),
    "qwen3": (
        _TURN + "{% if m['role'] == 'assistant' and loop.last %}"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n{{ m['content'] }}<|im_end|>\n"
        "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "olmo2": (
        "<|endoftext|>" + _TURN + "<|{{ m['role'] }}|>\n{{ m['content'] }}"
        "{% if m['role'] == 'assistant' %}<|endoftext|>{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
    "phi3": (
        _TURN + "<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% else %}<|endoftext|>{% endif %}"
    ),
}
SPECIALS = {
    "chatml": (["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "<|im_end|>"),
    "llama3": (["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
    "gemma2": (["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<eos>"),
    "qwen3": (["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"], "<|im_end|>"),
    "olmo2": (["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>"], "<|endoftext|>"),
    "phi3": (["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"], "<|endoftext|>"),
    "plain": (["<|endoftext|>"], "<|endoftext|>"),
}
STYLES = tuple(SPECIALS)


@functools.cache
def _base_tokenizer(specials: tuple[str, ...]) -> str:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=list(specials), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def make_tokenizer(style: str = "chatml", predictors: bool = True) -> PreTrainedTokenizerFast:
    """A fresh byte-level BPE tokenizer with ``style``'s special tokens and chat template."""
    specials, eos = SPECIALS[style]
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_base_tokenizer(tuple(specials))))
    tok.eos_token = eos
    tok.pad_token = eos
    if predictors:
        tok.add_special_tokens({"additional_special_tokens": list(PREDICTOR_TOKENS)})
    if style in TEMPLATES:
        tok.chat_template = TEMPLATES[style]
    return tok


def tiny_llama(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 2, attn: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        attn_implementation=attn,
    )
    return LlamaForCausalLM(cfg).float().eval()


def write_checkpoint(d, style: str = "chatml", seed: int | None = None):
    """A tiny Llama checkpoint with ``style``'s tokenizer saved in folder ``d``; returns ``d``."""
    tok = make_tokenizer(style)
    (tiny_llama(tok) if seed is None else tiny_llama(tok, seed=seed)).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def write_rows(path, rows: list):
    """``rows`` (lists of messages) as a JSONL data file at ``path``; returns ``path``."""
    import json

    path.write_text("".join(json.dumps({"messages": r}) + "\n" for r in rows))
    return path


def write_run_inputs(d, rows: list) -> None:
    """A training run's inputs in folder ``d``: a tiny ChatML Llama checkpoint in ``d/ckpt`` and
    ``rows`` (lists of messages) as ``d/train.jsonl``."""

    write_checkpoint(d / "ckpt")
    write_rows(d / "train.jsonl", rows)


def conv(user: str = "lines with the string 'dog'", answer: str = "(.*dog.*)", system: str | None = "Convert"):
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
