"""Toy data and a toy model, built offline: generated NL-RX-style rows and a tiny local checkpoint.

The demo, the benchmark and the tests all start from these; they sit below every command, so that
neither command imports the other. ``nlrx`` is pure Python and cheap to import; ``tiny`` imports
torch/transformers inside its functions, so importing this package stays light.
"""

from .nlrx import SYSTEM_PROMPT, generate_pairs, make_splits, to_row, validate_regex, write_jsonl
from .tiny import SIZES, build_checkpoint, tiny_llama_config, train_tokenizer

__all__ = [
    "SYSTEM_PROMPT",
    "SIZES",
    "build_checkpoint",
    "generate_pairs",
    "make_splits",
    "tiny_llama_config",
    "to_row",
    "train_tokenizer",
    "validate_regex",
    "write_jsonl",
]
