"""The ``transformers`` backend: a local causal language model loaded from a folder.

Nothing is downloaded (``local_files_only``). If the tokenizer has a chat template it is used;
otherwise the messages are written as a plain "Instruction/Answer" text. Generation is seeded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medimp.prompts.backends._registry import register_backend
from medimp.prompts.backends.openai import Completion
from medimp.prompts.errors import BackendError

__all__ = ["TransformersBackend"]


class TransformersBackend:
    """Paraphrases from a local causal LM (``AutoModelForCausalLM``).

    Args:
        model_path: folder with the model and its tokenizer.
        max_new_tokens: reply length limit (a reply that reaches it counts as truncated).
        temperature: sampling temperature.
        seed: seeds generation (each call uses seed + call index).
    """

    name = "transformers"

    def __init__(self, model_path: str | os.PathLike[str], max_new_tokens: int = 256,
                 temperature: float = 0.9, seed: int = 0):
        path = Path(model_path)
        if not path.is_dir():
            raise BackendError(f"{path}: model folder not found (a local causal LM saved with "
                               "save_pretrained)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model_obj = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise BackendError(f"{path}: cannot load a causal LM and tokenizer: {exc}") from exc
        self.model_obj.eval()
        self.model = path.name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.seed = seed
        self._calls = 0

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True)
        parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(parts) + "\n\nAssistant:"

    def complete(self, messages: list[dict[str, str]]) -> Completion:
        """Generate one reply to ``messages``."""
        import torch

        enc = self.tokenizer(self._prompt(messages), return_tensors="pt")
        torch.manual_seed(self.seed + self._calls)
        self._calls += 1
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        with torch.no_grad():
            out = self.model_obj.generate(**enc, do_sample=True, temperature=self.temperature,
                                          max_new_tokens=self.max_new_tokens,
                                          pad_token_id=pad)
        new = out[0, enc["input_ids"].shape[1]:]
        ended = eos is not None and bool((new == eos).any())
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        finish = "stop" if ended or len(new) < self.max_new_tokens else "length"
        return Completion(text=text, finish_reason=finish)


@register_backend(name="transformers")
def _transformers_backend(*, model_path: str | os.PathLike[str] | None = None,
                          forbidden: object = None, no_cohort: bool = False,
                          **options: Any) -> TransformersBackend:
    """A local causal LM (nothing leaves the machine; options: see TransformersBackend)."""
    if model_path is None:
        raise BackendError("the transformers backend needs a local causal LM folder "
                           "(--model-path)")
    return TransformersBackend(model_path, **options)
