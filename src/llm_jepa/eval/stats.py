"""The statistics used by eval: they live in :mod:`llm_jepa.stats` (one module for every command)."""

from ..stats import mcnemar, paired_rows_test, sign_flip_test, sign_test, wilson_interval

__all__ = ["mcnemar", "paired_rows_test", "sign_flip_test", "sign_test", "wilson_interval"]
