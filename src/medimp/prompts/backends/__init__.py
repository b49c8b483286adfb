"""Paraphrasing backends: ``rules`` (offline, deterministic), ``openai`` (any OpenAI-compatible
chat-completions endpoint) and ``transformers`` (a local causal language model).

Backends are registered by name (:func:`register_backend`) and built with
:func:`create_backend`; adding one is adding a module with a decorated builder.
"""

from medimp.prompts.backends._registry import create_backend, list_backends, register_backend

__all__ = ["create_backend", "list_backends", "register_backend"]
