"""Per-prompt cache of a frozen text-encoder prefix.

A frozen prefix (embeddings + the first N transformer layers) gives the same token states for the
same prompt every time, so they are computed once per unique prompt string and reused: after the
first epoch a frozen or mostly-frozen text encoder only runs its trainable suffix.
Entries are kept per prompt at the prompt's own length (no padding), so they are independent of
which other prompts shared the batch; batches are re-padded on the way out. Entries live on the
CPU in float32 (GPU memory stays free for training; a batch is a few MB to move) whatever the
device and autocast precision of the step that computed them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = ["CacheInfo", "PromptCache"]


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a :class:`PromptCache` (``hits``/``misses`` count prompts, not batches)."""

    hits: int
    misses: int
    size: int
    max_entries: int


class PromptCache:
    """LRU map prompt string → tensor (token states ``[T_i, H]`` or pooled ``[H]``).

    Args:
        max_entries: the least recently used prompts are dropped beyond this many.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = int(max_entries)
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def missing(self, texts: list[str]) -> list[str]:
        """Unique prompts of ``texts`` not in the cache, in first-seen order."""
        return [t for t in dict.fromkeys(texts) if t not in self._data]

    def put(self, text: str, value: torch.Tensor) -> None:
        """Store ``value`` (detached, CPU, float32) for ``text``."""
        self._data[text] = value.detach().to("cpu", torch.float32)
        self._data.move_to_end(text)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def get_many(self, texts: list[str], fresh: set[str] | None = None) -> list[torch.Tensor]:
        """Values for ``texts``; counts a hit for each text not in ``fresh`` (just computed)."""
        fresh = fresh or set()
        out = []
        for t in texts:
            out.append(self._data[t])
            self._data.move_to_end(t)
            if t in fresh:
                self.misses += 1
                fresh = fresh - {t}  # a repeat inside the same batch is a hit
            else:
                self.hits += 1
        return out

    def clear(self) -> None:
        """Forget every entry (e.g. after the frozen weights changed)."""
        self._data.clear()

    def info(self) -> CacheInfo:
        """Hit/miss counters and size."""
        return CacheInfo(self.hits, self.misses, len(self._data), self.max_entries)


def pad_token_states(
    states: list[torch.Tensor], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-prompt token states ``[T_i, H]`` to ``[B, T, H]`` with a ``[B, T]`` mask."""
    t_max = max(s.shape[0] for s in states)
    h = states[0].shape[-1]
    device = device or states[0].device
    out = states[0].new_zeros((len(states), t_max, h), device=device)
    mask = torch.zeros((len(states), t_max), dtype=torch.long, device=device)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s.to(device)
        mask[i, : s.shape[0]] = 1
    return out, mask
