"""A small CLIP-style text transformer trained from scratch (MEDIMP's non-BERT option).

It reuses the tokenizer (vocabulary) of a Hugging Face model, by default the bundled
all-MiniLM-L6-v2, so no separate BPE file is needed. Unlike CLIP, attention is bidirectional
with a padding mask and the sentence embedding is the masked mean (or the first token), not the
state at ``argmax(token_ids)``: with a BERT vocabulary that index is an arbitrary word.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medimp._textmodel import default_text_model_path, masked_mean
from medimp.models._errors import TextModelError

__all__ = ["ClipTextEncoder", "create_clip_text_encoder"]


class ClipTextEncoder(nn.Module):
    """Token + position embeddings → pre-norm transformer → LayerNorm → pooled ``[B, F]``."""

    def __init__(
        self,
        tokenizer: Any,
        *,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        max_length: int = 77,
        pooling: str = "mean",
        embed_dim: int | None = None,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise TextModelError(f"pooling={pooling!r} is not 'mean' or 'cls'")
        if width % heads:
            raise TextModelError(f"heads ({heads}) must divide width ({width})")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pooling = pooling
        vocab = len(tokenizer)
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.empty(self.max_length, width))
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.proj = nn.Linear(width, int(embed_dim)) if embed_dim is not None else nn.Identity()
        self.num_features = int(embed_dim) if embed_dim is not None else width
        self.num_layers = layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with padding to the longest prompt and truncation at ``max_length``."""
        tok = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        dev = self.token_embedding.weight.device
        return {k: tok[k].to(dev) for k in ("input_ids", "attention_mask")}

    def forward(self, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
        """Embeddings ``[B, num_features]`` of prompt strings."""
        if isinstance(texts, str):
            texts = [texts]
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TextModelError("the text encoder needs a non-empty list of prompt strings")
        tok = self.tokenize(list(texts))
        ids, mask = tok["input_ids"], tok["attention_mask"]
        x = self.token_embedding(ids) + self.positional_embedding[: ids.shape[1]]
        x = self.transformer(x, src_key_padding_mask=mask == 0)
        x = self.ln_final(x)
        pooled = x[:, 0] if self.pooling == "cls" else masked_mean(x, mask)
        return self.proj(pooled)


def create_clip_text_encoder(
    tokenizer_path: str | os.PathLike[str] | None = None,
    *,
    width: int = 256,
    layers: int = 4,
    heads: int = 4,
    max_length: int = 77,
    pooling: str = "mean",
    embed_dim: int | None = None,
) -> ClipTextEncoder:
    """A from-scratch text transformer using the tokenizer found in ``tokenizer_path``.

    Raises:
        TextModelError: no tokenizer in ``tokenizer_path``.
    """
    p = Path(tokenizer_path) if tokenizer_path is not None else default_text_model_path()
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise TextModelError(f"cannot load a tokenizer from {p}: {exc}") from exc
    return ClipTextEncoder(tokenizer, width=width, layers=layers, heads=heads,
                           max_length=max_length, pooling=pooling, embed_dim=embed_dim)
