"""Registry of 3D image encoders, created by name (after timm's ``_registry``/``_factory``).

Each builder is a function ``builder(in_channels, embed_dim=None, **kw) -> nn.Module`` registered
with :func:`register_image_encoder`. Every encoder takes ``[B, C, D, H, W]`` (``C`` = number of
contrast phases) and returns ``[B, F]`` features, with ``F`` in its ``num_features`` attribute
(``F == embed_dim`` when ``embed_dim`` is given). :func:`create_image_encoder` also records the
arguments it was built with in ``encoder_config``, so that an exported encoder can be rebuilt
from JSON (``create_image_encoder(**cfg)``) without unpickling anything.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from torch import nn

from medimp._registry import Registry
from medimp.models._errors import ModelError

__all__ = ["create_image_encoder", "list_image_encoders", "register_image_encoder"]


def _load_builtin() -> None:
    # Importing the package registers the built-in encoders (their modules use the decorator).
    import medimp.models.image  # noqa: F401


_IMAGE_ENCODERS: Registry[Callable[..., nn.Module]] = Registry(
    "image encoder", ModelError, load=_load_builtin)


def register_image_encoder(
    fn: Callable[..., nn.Module] | None = None, *, name: str | None = None
) -> Any:
    """Register an image-encoder builder under ``name`` (default: the function's name).

    Usable as ``@register_image_encoder`` or ``@register_image_encoder(name="...")``.
    """
    return _IMAGE_ENCODERS.decorator(fn, name=name)


def list_image_encoders() -> list[str]:
    """Names accepted by :func:`create_image_encoder`, sorted."""
    return _IMAGE_ENCODERS.names()


def create_image_encoder(
    name: str, in_channels: int, embed_dim: int | None = None, *,
    pretrained: str | os.PathLike[str] | None = None, **kw: Any
) -> nn.Module:
    """Build the image encoder ``name`` for ``in_channels`` input phases.

    Args:
        name: a registered name, see :func:`list_image_encoders`.
        in_channels: channels of the input volume (the number of phases stacked per exam).
        embed_dim: output feature size; ``None`` keeps the encoder's natural feature size.
        pretrained: a 2D checkpoint to inflate into the encoder (OpenAI CLIP TorchScript,
            open_clip, or a plain 2D ResNet state dict; see
            :func:`medimp.models.image.pretrained.load_pretrained_2d`). It is not part of
            ``encoder_config``: an exported encoder carries its own trained weights.
        **kw: encoder-specific options (widths, layers, input size, ...), see each builder.

    Raises:
        ModelError: unknown name (the message lists the known ones) or invalid option.
    """
    builder = _IMAGE_ENCODERS.lookup(name)
    if int(in_channels) < 1:
        raise ModelError(f"in_channels must be >= 1, got {in_channels}")
    if embed_dim is not None and int(embed_dim) < 1:
        raise ModelError(f"embed_dim must be >= 1 or None, got {embed_dim}")
    try:
        model = builder(in_channels=int(in_channels), embed_dim=embed_dim, **kw)
    except TypeError as exc:  # an option the builder does not know
        raise ModelError(f"image encoder {name!r}: {exc}") from exc
    if pretrained is not None:
        from medimp.models.image.pretrained import load_pretrained_2d

        load_pretrained_2d(model, pretrained)
    model.encoder_config = {"name": name, "in_channels": int(in_channels), "embed_dim": embed_dim,
                            **kw}
    return model
