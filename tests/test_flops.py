import pytest
from transformers import GPT2Config, LlamaConfig

from llm_jepa.flops import forward_flops, param_counts, step_flops, transformer_shape


def _tiny_llama(**kw):
    # hidden 8, 2 layers, 2 heads of dim 4, 1 kv head, MLP 16, vocab 10
    return LlamaConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       intermediate_size=16, vocab_size=10, **kw)


def test_param_counts_by_hand():
    counts = param_counts(transformer_shape(_tiny_llama(tie_word_embeddings=False)))
    # per layer: q 8*8 + o 8*8 + k 8*4 + v 8*4 = 192; gated MLP 3*8*16 = 384 -> 576; two layers 1152
    assert counts == {"nonembedding": 1152, "embedding": 80, "lm_head": 80}
    assert param_counts(transformer_shape(_tiny_llama(tie_word_embeddings=True)))["lm_head"] == 0


def test_step_flops_by_hand():
    # segments of 3 and 2 tokens (e.g. a packed text view and code view), labels on 2 positions
    matmul = 2 * 1152 * 5
    attention = 4 * 2 * 2 * 4 * (6 + 3)  # layers * heads * head_dim * causal pairs (3*4/2 + 2*3/2)
    head = 2 * 8 * 10 * 2
    expected_forward = matmul + attention + head  # 11520 + 576 + 320
    assert forward_flops(_tiny_llama(), [3, 2], lm_head_tokens=2) == expected_forward
    assert step_flops(_tiny_llama(), [[3], [2]], lm_head_tokens=2) == 3 * expected_forward


def test_packing_is_cheaper_than_one_long_segment():
    packed = forward_flops(_tiny_llama(), [100, 100], lm_head_tokens=0)
    joined = forward_flops(_tiny_llama(), [200], lm_head_tokens=0)
    assert packed < joined


def test_gpt2_names_and_ungated_mlp():
    shape = transformer_shape(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=10, n_inner=None))
    assert (shape.hidden, shape.intermediate, shape.gated) == (8, 32, False)
    assert param_counts(shape)["nonembedding"] == 4 * 8 * 8 + 2 * 8 * 32


def test_dict_config_and_errors():
    assert transformer_shape({"hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 1,
                              "vocab_size": 3}).head_dim == 4
    with pytest.raises(ValueError, match="hidden_size"):
        transformer_shape({"hidden_size": 4})
    with pytest.raises(ValueError):
        forward_flops(_tiny_llama(), [-1], lm_head_tokens=0)
