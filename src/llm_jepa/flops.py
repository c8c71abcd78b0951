"""Analytic training FLOPs of a decoder-only transformer, counted from the tokens actually processed.

One multiply-add is 2 FLOPs. Per forward pass:

- matmuls:   2 * N_nonembedding * tokens          (every processed token goes through every layer)
- attention: 4 * layers * heads * head_dim * sum over segments of L * (L + 1) / 2
             (causal: query i sees i + 1 keys; QK^T and AV are one multiply-add each per pair)
- LM head:   2 * hidden * vocab * lm_head_tokens  (llm-jepa applies the head only where labels are)

Training = forward + backward, and backward is counted as twice the forward (``backward_factor``),
the usual 3x rule. Norms, biases, activations, the softmax and the embedding lookup are left out:
they are a few percent at most. With LoRA the true backward is cheaper; these are upper-bound
"full fine-tuning" numbers, which is what equal-compute comparisons need to be consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TransformerShape", "transformer_shape", "param_counts", "forward_flops", "step_flops"]

# Families whose MLP has a gate projection (three matrices: gate, up, down) rather than two.
GATED_MLP_FAMILIES = {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3",
                      "gemma3_text", "olmo", "olmo2", "phi3", "granite", "smollm3", "cohere"}


@dataclass(frozen=True)
class TransformerShape:
    """The few numbers FLOPs depend on."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    gated: bool


def _get(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if value is not None:
            return value
    return default


def transformer_shape(config: Any, *, gated_mlp: bool | None = None) -> TransformerShape:
    """Read hidden size, layers, heads, kv heads, head dim, intermediate size, vocab from an HF config.

    ``config`` is a ``transformers.PretrainedConfig`` or a plain dict with the same field names
    (GPT-2 style names ``n_embd``, ``n_layer``, ``n_head`` are understood too). ``gated_mlp`` defaults
    to True for the Llama-like families in ``GATED_MLP_FAMILIES``.
    """
    text = _get(config, "text_config")  # multimodal configs (e.g. Gemma 3) nest the LM's config
    config = text if text is not None else config
    hidden = _get(config, "hidden_size", "n_embd", "d_model")
    layers = _get(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _get(config, "num_attention_heads", "n_head")
    vocab = _get(config, "vocab_size")
    if None in (hidden, layers, heads, vocab):
        raise ValueError("config needs hidden_size, num_hidden_layers, num_attention_heads and vocab_size")
    model_type = _get(config, "model_type", default="")
    return TransformerShape(
        hidden=int(hidden), layers=int(layers), heads=int(heads),
        kv_heads=int(_get(config, "num_key_value_heads", default=heads)),
        head_dim=int(_get(config, "head_dim", default=hidden // heads)),
        intermediate=int(_get(config, "intermediate_size", "n_inner", default=4 * hidden)),
        vocab=int(vocab),
        tied=bool(_get(config, "tie_word_embeddings", default=True)),
        gated=bool(model_type in GATED_MLP_FAMILIES if gated_mlp is None else gated_mlp),
    )


def param_counts(shape: TransformerShape) -> dict[str, int]:
    """Weight-matrix parameter counts: ``nonembedding`` (attention + MLP), ``embedding``, ``lm_head``.

    ``lm_head`` is 0 when the head is tied to the input embedding. Norms and biases are not counted.
    """
    h, d = shape.hidden, shape.head_dim
    attention = h * shape.heads * d * 2 + h * shape.kv_heads * d * 2  # q, o + k, v
    mlp = (3 if shape.gated else 2) * h * shape.intermediate
    embedding = shape.vocab * h
    return {"nonembedding": shape.layers * (attention + mlp), "embedding": embedding,
            "lm_head": 0 if shape.tied else embedding}


def _flatten(lengths: Iterable[Any]) -> list[int]:
    out = []
    for item in lengths:
        if isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
            out.extend(_flatten(item))
        else:
            out.append(int(item))
    return out


def forward_flops(config: Any, segment_lengths: Iterable[Any], lm_head_tokens: int, **shape_kw: Any) -> float:
    """FLOPs of one forward pass over ``segment_lengths`` (ints, or nested lists of ints per row).

    A segment is a stretch of tokens attending causally only within itself (a packed view, or a
    whole unpacked sequence). Padding that the model processes should be included as its own
    segment if you want it counted.
    """
    shape = config if isinstance(config, TransformerShape) else transformer_shape(config, **shape_kw)
    lengths = _flatten(segment_lengths)
    if any(n < 0 for n in lengths) or lm_head_tokens < 0:
        raise ValueError("segment lengths and lm_head_tokens must be non-negative")
    tokens = sum(lengths)
    matmul = 2 * param_counts(shape)["nonembedding"] * tokens
    pairs = sum(n * (n + 1) // 2 for n in lengths)
    attention = 4 * shape.layers * shape.heads * shape.head_dim * pairs
    head = 2 * shape.hidden * shape.vocab * lm_head_tokens
    return float(matmul + attention + head)


def step_flops(config: Any, segment_lengths: Iterable[Any], lm_head_tokens: int, *,
               backward_factor: float = 2.0, **shape_kw: Any) -> float:
    """Training FLOPs of one optimiser step: (1 + backward_factor) x :func:`forward_flops`."""
    return (1.0 + backward_factor) * forward_flops(config, segment_lengths, lm_head_tokens, **shape_kw)
