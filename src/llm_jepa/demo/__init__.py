"""Building blocks of the offline demo: generated NL-RX-style data and a tiny local checkpoint.

``nlrx`` is pure Python and cheap to import; ``tiny`` imports torch/transformers inside its
functions, so importing this package stays light.
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
