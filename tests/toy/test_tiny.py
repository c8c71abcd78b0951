import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from llm_jepa.toy.nlrx import generate_pairs
from llm_jepa.toy.tiny import SIZES, build_checkpoint, tiny_llama_config, train_tokenizer
from llm_jepa.views import PREDICTOR_TOKENS


def _texts(n: int = 1500) -> list[str]:
    return [m["content"] for row in generate_pairs(n, seed=0) for m in row["messages"]]


@pytest.fixture(scope="module")
def texts():
    return _texts()


@pytest.fixture(scope="module")
def tok(texts):
    return train_tokenizer(texts, vocab_size=512)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, texts):
    return build_checkpoint(
        tmp_path_factory.mktemp("ckpt"), texts[:600], seed=3, size="micro", vocab_size=400
    )


def test_special_tokens_are_single_ids(tok):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *PREDICTOR_TOKENS]
    ids = tok.convert_tokens_to_ids(specials)
    assert len(set(ids)) == len(specials) and tok.unk_token_id not in ids
    for token, i in zip(specials, ids, strict=True):
        assert tok.encode(f"ab{token}cd").count(i) == 1
    assert tok.eos_token == tok.pad_token == "<|endoftext|>"


def test_chat_template_renders_chatml(tok):
    msgs = [
        {"role": "system", "content": "Convert."},
        {"role": "user", "content": "lines with a vowel"},
        {"role": "assistant", "content": "[AEIOUaeiou]"},
    ]
    assert tok.apply_chat_template(msgs, tokenize=False) == (
        "<|im_start|>system\nConvert.<|im_end|>\n"
        "<|im_start|>user\nlines with a vowel<|im_end|>\n"
        "<|im_start|>assistant\n[AEIOUaeiou]<|im_end|>\n"
    )
    assert tok.apply_chat_template(msgs[:2], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nConvert.<|im_end|>\n<|im_start|>user\nlines with a vowel<|im_end|>\n<|im_start|>assistant\n"
    )


def test_assistant_mask_covers_the_answer_and_its_end_marker(tok):
    msgs = generate_pairs(1, seed=4)[0]["messages"]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, keep in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if keep]
    assert tok.decode(answer) == msgs[2]["content"] + "<|im_end|>"


@pytest.mark.parametrize("text", ["lines with the string 'dog'", r"\b~(([a-z]){3,})\b", "café ~ naïve 42 ✓"])
def test_encode_decode_round_trip_adds_nothing(tok, text):
    ids = tok.encode(text)
    assert tok.eos_token_id not in ids  # nothing added on encode; the template writes markers
    assert tok.decode(ids) == text


def test_vocabulary_is_capped_and_learns_the_grammar(tok):
    assert len(tok) <= 512
    one_row = tok.encode("lines with a lower-case letter followed by the string 'dog'")
    assert len(one_row) < len("lines with a lower-case letter followed by the string 'dog'") / 3


def test_config_presets_and_overrides():
    hidden, layers, heads = SIZES["micro"]
    cfg = tiny_llama_config(100, size="micro", eos_token_id=7, pad_token_id=7)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (hidden, layers, heads)
    assert cfg.intermediate_size == 4 * hidden and cfg.tie_word_embeddings
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id) == (100, 7, 7)
    cfg = tiny_llama_config(100, size="micro", num_layers=3, hidden_size=96, intermediate_size=200)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (3, 96, 200)
    with pytest.raises(ValueError, match="unknown size"):
        tiny_llama_config(100, size="huge")
    with pytest.raises(ValueError, match="divisible"):
        tiny_llama_config(100, hidden_size=100, num_heads=3)


def test_checkpoint_loads_back_with_tokenizer_and_template(ckpt):
    tok = AutoTokenizer.from_pretrained(ckpt)
    assert len(tok) <= 400
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False) == (
        "<|im_start|>user\nx<|im_end|>\n"
    )
    for token in PREDICTOR_TOKENS:
        assert len(tok.encode(token)) == 1
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id


def test_checkpoint_weights_are_the_seeded_init(ckpt):
    loaded = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    torch.manual_seed(3)  # the seed build_checkpoint was given; an independent construction
    fresh = LlamaForCausalLM(AutoConfig.from_pretrained(ckpt)).eval()
    ids = torch.tensor([[1, 5, 9, 42, 3, 0]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, fresh(ids).logits)
        torch.manual_seed(4)
        other = LlamaForCausalLM(AutoConfig.from_pretrained(ckpt)).eval()
        assert not torch.allclose(loaded(ids).logits, other(ids).logits)


def test_build_checkpoint_refuses_a_non_empty_dir_and_keeps_global_rng(tmp_path, texts):
    (tmp_path / "keep.txt").write_text("user output")
    with pytest.raises(FileExistsError):
        build_checkpoint(tmp_path, texts[:100], size="micro", vocab_size=300)
    assert (tmp_path / "keep.txt").read_text() == "user output"
    state = torch.get_rng_state()
    build_checkpoint(tmp_path / "new", texts[:100], size="micro", vocab_size=300)
    assert torch.equal(state, torch.get_rng_state())
