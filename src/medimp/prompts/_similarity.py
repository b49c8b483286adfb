"""Semantic similarity of sentences with the offline MiniLM encoder (loaded once, cached).

Used by validation: a paraphrase must stay close in meaning to its source template. Embeddings
are the attention-masked mean of the last hidden states (``medimp._textmodel.masked_mean``),
L2-normalised, so similarity is a dot product.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from medimp._textmodel import default_text_model_path, masked_mean

__all__ = ["SentenceSimilarity", "load_similarity"]


@functools.lru_cache(maxsize=4)
def _load(path: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tok, model


class SentenceSimilarity:
    """Cosine similarity between sentences; embeddings are cached per text.

    Args:
        model_path: a local sentence-encoder folder (default: the bundled all-MiniLM-L6-v2).
        batch_size: sentences per forward pass.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, batch_size: int = 32):

        self.model_path = Path(model_path) if model_path else default_text_model_path()
        self.batch_size = batch_size
        self._cache: dict[str, object] = {}

    def embed(self, texts: list[str]):
        """[len(texts), H] L2-normalised embeddings (a torch tensor)."""
        import torch


        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            tok, model = _load(str(self.model_path))
            for i in range(0, len(todo), self.batch_size):
                chunk = todo[i : i + self.batch_size]
                enc = tok(chunk, padding=True, truncation=True, max_length=128,
                          return_tensors="pt")
                with torch.no_grad():
                    hidden = model(**enc).last_hidden_state
                emb = torch.nn.functional.normalize(
                    masked_mean(hidden, enc["attention_mask"]), dim=-1)
                for t, e in zip(chunk, emb, strict=True):
                    self._cache[t] = e
        return torch.stack([self._cache[t] for t in texts])  # type: ignore[misc]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two sentences, in [-1, 1]."""
        ea, eb = self.embed([a, b])
        return float((ea * eb).sum())

    def similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each pair, embedding every distinct text once."""
        if not pairs:
            return []
        emb = self.embed([t for p in pairs for t in p])
        return [float((emb[2 * i] * emb[2 * i + 1]).sum()) for i in range(len(pairs))]


@functools.lru_cache(maxsize=4)
def load_similarity(model_path: str | None = None) -> SentenceSimilarity:
    """A shared ``SentenceSimilarity`` per model path (so its embedding cache is shared too)."""
    return SentenceSimilarity(model_path)
