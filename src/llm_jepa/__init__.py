"""llm-jepa: train language models with the LLM-JEPA objective, evaluate them, analyse their embeddings."""

__version__ = "0.1.0"
