"""Hugging Face text encoders from a local folder, pooled with the attention mask.

Fixes two defects of the original MEDIMP code: the sentence embedding is the masked mean of the
token states (or the CLS state), never the state at ``argmax(token_ids)``; and freezing selects
transformer layers by their index in the model's layer list, never by substring of a parameter
name (``first11`` used to freeze all 12 BERT layers).

Freezing modes (``freeze=``):

- ``"none"``: everything trains.
- ``"all"``: nothing trains; pooled outputs are cached per prompt.
- ``"layernorm"``: only the LayerNorm weights train.
- ``"first:N"``: the embeddings and the first ``N`` layers are frozen; ``N`` may be negative to
  count from the end (``"first:-1"``: all but the last layer, MEDIMP's ``first11`` for a 12-layer
  BERT and its analogue for any depth). The frozen prefix's token states are cached per prompt.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medimp._textmodel import default_text_model_path, masked_mean
from medimp.models._errors import TextModelError
from medimp.models.text.cache import CacheInfo, PromptCache, pad_token_states

__all__ = ["TextEncoder", "create_text_encoder", "parse_freeze"]

_POOLINGS = ("mean", "cls")
# Where encoder models keep their embeddings and their list of transformer layers.
_LAYER_PATHS = ("encoder.layer", "encoder.layers", "transformer.layer", "layers", "layer")


def parse_freeze(freeze: str, num_layers: int) -> tuple[str, int]:
    """Parse a freezing spec into ``(mode, n_frozen_layers)``.

    ``mode`` is ``"none"``, ``"all"``, ``"layernorm"`` or ``"first"``; ``n_frozen_layers`` is
    meaningful for ``"first"`` only (0..num_layers).

    Raises:
        TextModelError: unknown spec, or ``N`` outside ``[-num_layers, num_layers]``.
    """
    spec = str(freeze).strip().lower()
    if spec in ("none", "all", "layernorm"):
        return spec, num_layers if spec == "all" else 0
    if spec.startswith("first:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            n = None
        if n is None:
            raise TextModelError(f"freeze={freeze!r}: N in 'first:N' must be an integer")
        if not -num_layers <= n <= num_layers:
            raise TextModelError(
                f"freeze={freeze!r}: the text model has {num_layers} layers, so N must be in "
                f"[-{num_layers}, {num_layers}] (negative counts from the end)"
            )
        return "first", n % num_layers if n < 0 else n
    raise TextModelError(
        f"freeze={freeze!r} is not one of 'none', 'all', 'layernorm', 'first:N'"
    )


def _get_path(root: nn.Module, dotted: str) -> Any:
    obj: Any = root
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _find_layers(model: nn.Module) -> tuple[str, str, nn.ModuleList]:
    """Dotted path of the module holding the layer list, the list's attribute, and the list."""
    for dotted in _LAYER_PATHS:
        layers = _get_path(model, dotted)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            owner_path, _, attr = dotted.rpartition(".")
            return owner_path, attr, layers
    raise TextModelError(
        f"cannot find the transformer layer list of {type(model).__name__} "
        f"(looked for {', '.join(_LAYER_PATHS)}); use freeze='all' or 'none' with this model"
    )


class _Passthrough(nn.Module):
    """Stands in for the embeddings so the model runs from given token states."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        emb = kwargs.get("inputs_embeds")
        if emb is None:
            emb = next(a for a in args if isinstance(a, torch.Tensor) and a.ndim == 3)
        return emb


class TextEncoder(nn.Module):
    """A Hugging Face encoder + tokenizer: ``encoder(list_of_prompts) -> [B, num_features]``.

    Build it with :func:`create_text_encoder`. Attributes: ``tokenizer``, ``model`` (the HF
    model), ``num_layers``, ``num_features``, ``pooling``, ``freeze`` (the spec) and
    ``n_frozen_layers``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        pooling: str = "mean",
        freeze: str = "first:-1",
        max_length: int = 77,
        cache: bool = True,
        embed_dim: int | None = None,
        cache_size: int = 100_000,
        source: str = "",
    ) -> None:
        super().__init__()
        if pooling not in _POOLINGS:
            raise TextModelError(f"pooling={pooling!r} is not one of {_POOLINGS}")
        if int(max_length) < 2:
            raise TextModelError(f"max_length must be >= 2 tokens, got {max_length}")
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # unused (we pool ourselves); unused weights would upset DDP
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.max_length = int(max_length)
        self.source = source
        self.freeze = freeze
        # Paths, not module references: a second reference would register the layers twice.
        self._owner_path, self._layers_attr, layers = _find_layers(model)
        self.num_layers = len(layers)
        self._mode, self.n_frozen_layers = parse_freeze(freeze, self.num_layers)
        if self._mode == "first" and getattr(model, "embeddings", None) is None:
            raise TextModelError(
                f"{type(model).__name__} has no 'embeddings' module; use freeze='all' or 'none'"
            )
        hidden = int(model.config.hidden_size)
        self.proj = nn.Linear(hidden, int(embed_dim)) if embed_dim is not None else nn.Identity()
        self.num_features = int(embed_dim) if embed_dim is not None else hidden
        self._apply_freeze()
        self.use_cache = bool(cache) and self._mode in ("all", "first")
        self.cache = PromptCache(cache_size)
        # Loading new weights makes cached frozen outputs stale. (A bound method, not a lambda,
        # so that the encoder still pickles for spawned DDP processes.)
        self.register_load_state_dict_pre_hook(self._clear_cache_on_load)
        self.train(self.training)

    def _clear_cache_on_load(self, *args: Any, **kwargs: Any) -> None:
        self.cache.clear()

    # -- freezing ---------------------------------------------------------------------------
    @property
    def _owner(self) -> nn.Module:
        return _get_path(self.model, self._owner_path) if self._owner_path else self.model

    @property
    def _layers(self) -> nn.ModuleList:
        return getattr(self._owner, self._layers_attr)

    def _frozen_modules(self) -> list[nn.Module]:
        if self._mode == "all":
            return [self.model]
        if self._mode == "first":
            return [self.model.embeddings, *list(self._layers)[: self.n_frozen_layers]]
        return []

    def _apply_freeze(self) -> None:
        mode = self._mode
        for p in self.model.parameters():
            p.requires_grad_(mode in ("none", "first"))
        if mode == "layernorm":
            for m in self.model.modules():
                if isinstance(m, nn.LayerNorm):
                    for p in m.parameters():
                        p.requires_grad_(True)
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> TextEncoder:
        """Like ``nn.Module.train``, but a frozen prefix always stays in eval mode (no dropout),
        so that its outputs are deterministic and can be cached."""
        super().train(mode)
        for m in self._frozen_modules():
            m.eval()
        return self

    # -- forward ----------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Tokenise with padding to the longest prompt and truncation at ``max_length``."""
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length,
            return_tensors="pt",
        )
        dev = self._device()
        return {k: v.to(dev) for k, v in tok.items()}

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, mask)

    @contextlib.contextmanager
    def _swapped(self, embeddings: nn.Module | None, layers: list[nn.Module]) -> Iterator[None]:
        """Temporarily replace the embeddings and/or the layer list of the HF model."""
        old_layers = self._layers
        old_emb = self.model.embeddings if embeddings is not None else None
        setattr(self._owner, self._layers_attr, nn.ModuleList(layers))
        if embeddings is not None:
            self.model.embeddings = embeddings
        try:
            yield
        finally:
            setattr(self._owner, self._layers_attr, old_layers)
            if old_emb is not None:
                self.model.embeddings = old_emb

    def _full(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tok = self.tokenize(texts)
        out = self.model(**tok)
        return out.last_hidden_state, tok["attention_mask"]

    def _prefix_states(self, texts: list[str]) -> list[torch.Tensor]:
        """Token states after the frozen prefix, one ``[T_i, H]`` per prompt (no padding)."""
        tok = self.tokenize(texts)
        with torch.no_grad(), self._swapped(None, list(self._layers)[: self.n_frozen_layers]):
            hidden = self.model(**tok).last_hidden_state
        lengths = tok["attention_mask"].sum(dim=1).tolist()
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    def _suffix(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run the trainable layers on given token states; returns last hidden states."""
        suffix = list(self._layers)[self.n_frozen_layers :]
        with self._swapped(_Passthrough(), suffix):
            return self.model(inputs_embeds=states, attention_mask=mask).last_hidden_state

    def forward(self, texts: list[str] | tuple[str, ...]) -> torch.Tensor:
        """Pooled (and optionally projected) embeddings ``[B, num_features]`` of ``texts``."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TextModelError("the text encoder needs a non-empty list of prompt strings")
        if self._mode == "all":
            pooled = self._pooled_frozen(texts)
        elif self._mode == "first" and self.use_cache:
            missing = self.cache.missing(texts)
            if missing:
                for t, s in zip(missing, self._prefix_states(missing), strict=True):
                    self.cache.put(t, s)
            states, mask = pad_token_states(self.cache.get_many(texts, set(missing)),
                                            self._device())
            pooled = self._pool(self._suffix(states, mask), mask)
        else:
            hidden, mask = self._full(texts)
            pooled = self._pool(hidden, mask)
        return self.proj(pooled)

    def _pooled_frozen(self, texts: list[str]) -> torch.Tensor:
        if not self.use_cache:
            with torch.no_grad():
                return self._pool(*self._full(texts))
        missing = self.cache.missing(texts)
        if missing:
            with torch.no_grad():
                pooled = self._pool(*self._full(missing))
            for t, p in zip(missing, pooled, strict=True):
                self.cache.put(t, p)
        dev = self._device()
        return torch.stack([v.to(dev) for v in self.cache.get_many(texts, set(missing))])

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the frozen-prefix cache."""
        return self.cache.info()

    def extra_repr(self) -> str:
        return (f"source={self.source!r}, pooling={self.pooling!r}, freeze={self.freeze!r}, "
                f"frozen_layers={self.n_frozen_layers}/{self.num_layers}, cache={self.use_cache}")


def _load_hf(path: Path) -> tuple[nn.Module, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise TextModelError(
            f"text model path {path} is not a Hugging Face model folder (no config.json there); "
            "pass the local folder of an encoder such as Bio_ClinicalBERT, or omit the path to "
            "use the bundled all-MiniLM-L6-v2"
        )
    from safetensors import SafetensorError
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a per-load weights bar is noise in logs and tests
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol notice precedes our error
            warnings.simplefilter("ignore", UserWarning)
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
    except pickle.UnpicklingError:  # weights_only=True refused a pickled object
        raise TextModelError(
            f"{path}: the weights file (pytorch_model.bin) holds pickled objects, not only "
            "tensors, and is refused (it could run code); convert it to model.safetensors on "
            "a trusted machine, or use another model folder") from None
    except (OSError, ValueError, KeyError, RuntimeError, EOFError, zipfile.BadZipFile,
            SafetensorError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TextModelError(
            f"cannot load a text model and tokenizer from {path}: {reason} (a damaged or "
            "truncated weights file? copy the model folder again)"
        ) from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    if getattr(model.config, "is_decoder", False):
        raise TextModelError(f"{path} holds a decoder model; medimp needs an encoder (BERT-like)")
    return model, tokenizer


def create_text_encoder(
    path: str | os.PathLike[str] | None = None,
    *,
    pooling: str = "mean",
    freeze: str = "first:-1",
    max_length: int = 77,
    cache: bool = True,
    embed_dim: int | None = None,
    cache_size: int = 100_000,
) -> TextEncoder:
    """Load a Hugging Face encoder and its tokenizer from a local folder, ready to embed prompts.

    Args:
        path: model folder; default :func:`medimp._textmodel.default_text_model_path`
            (all-MiniLM-L6-v2, 6 layers). Bio_ClinicalBERT (12 layers) works the same way.
        pooling: ``"mean"`` (attention-masked mean of token states) or ``"cls"``.
        freeze: ``"none"``, ``"all"``, ``"layernorm"`` or ``"first:N"`` (see module docs);
            the default ``"first:-1"`` trains only the last layer, as MEDIMP did.
        max_length: prompts are truncated to this many tokens.
        cache: cache the frozen prefix's outputs per unique prompt (modes ``all`` and
            ``first:N``); results are the same with or without it.
        embed_dim: if given, a trainable linear map to this size is appended.
        cache_size: most prompts kept in the cache (least recently used dropped).

    Raises:
        TextModelError: the path is not a model folder, or an option is invalid.
    """
    p = Path(path) if path is not None else default_text_model_path()
    model, tokenizer = _load_hf(p)
    return TextEncoder(
        model, tokenizer, pooling=pooling, freeze=freeze, max_length=max_length, cache=cache,
        embed_dim=embed_dim, cache_size=cache_size, source=str(p),
    )
