"""Defaults shared by the evaluation's modules and its command line, in a module of their own: it
imports nothing, so ``llm-jepa --help`` stays light, and no module of the package imports from the
package's ``__init__`` (which imports its modules, not the other way round)."""

__all__ = ["DEFAULT_BATCH_SIZE"]

#: prompts per ``model.generate`` call (also the similarity forward's batch); see
#: :mod:`llm_jepa.eval.generate` for the measured speed-up over one prompt at a time
DEFAULT_BATCH_SIZE = 64
