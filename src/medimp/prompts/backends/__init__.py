"""Paraphrasing backends: ``rules`` (offline, deterministic), ``openai`` (any OpenAI-compatible
chat-completions endpoint) and ``transformers`` (a local causal language model)."""
