"""Inflation of a 2D checkpoint into a 3D encoder (I3D, Carreira & Zisserman 2017).

Each 2D kernel ``[O, I, h, w]`` becomes ``[O, I, d, h, w]`` by repeating it ``d`` times along
depth and dividing by ``d``, so that a volume constant along depth gives the 2D response on every
(interior) slice. (The original MEDIMP code repeated kernels without dividing, multiplying every
activation by the depth.) If the stem's input channels differ (RGB weights, ``C`` phases), the
kernel is summed over the 2D channels and divided by ``C``: a grey image repeated over the ``C``
phases gives the 2D response to that grey image repeated over RGB.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from medimp.models._errors import CheckpointError
from medimp.models.checkpoint import load_state_dict_checked, load_state_file

__all__ = ["inflate_2d_state_dict", "load_inflated"]

# Keys that never transfer from a 2D classifier: its head and CLIP's 2D position grid.
DEFAULT_IGNORE = ("fc.", "attnpool.positional_embedding")


def _stem_key(model: nn.Module) -> str | None:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv3d):
            return f"{name}.weight" if name else "weight"
    return None


def inflate_2d_state_dict(
    state_2d: Mapping[str, torch.Tensor],
    model_3d: nn.Module,
    *,
    ignore: Iterable[str] = DEFAULT_IGNORE,
    source: str = "2D checkpoint",
) -> dict[str, torch.Tensor]:
    """A 3D state dict for ``model_3d`` made from a 2D one with the same parameter names.

    Args:
        state_2d: the 2D weights.
        model_3d: the 3D model (its parameter shapes give the depth of each kernel).
        ignore: key prefixes of ``state_2d`` to drop (heads, position grids).
        source: name of the weights for error messages.

    Raises:
        CheckpointError: keys the 3D model does not have, or shapes that inflation cannot
            explain (other widths or kernel sizes), all listed at once.
    """
    ignore = tuple(ignore)
    target = model_3d.state_dict()
    stem = _stem_key(model_3d)
    out: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    bad: list[str] = []
    for key, value in state_2d.items():
        if key.startswith(ignore):
            continue
        if key not in target:
            unexpected.append(key)
            continue
        want = target[key]
        if value.shape == want.shape:
            out[key] = value.detach().clone().to(want.dtype)
            continue
        if value.ndim == 4 and want.ndim == 5:
            o, i, h, w = value.shape
            o3, i3, d, h3, w3 = want.shape
            if (o, h, w) == (o3, h3, w3) and (i == i3 or key == stem):
                v = value.detach().to(want.dtype)
                if i != i3:
                    v = v.sum(dim=1, keepdim=True).repeat(1, i3, 1, 1) / i3
                out[key] = v.unsqueeze(2).repeat(1, 1, d, 1, 1) / d
                continue
        bad.append(f"{key} {list(value.shape)} vs 3D {list(want.shape)}")
    if unexpected or bad:
        msg = []
        if unexpected:
            msg.append(f"{len(unexpected)} keys unknown to the 3D model: "
                       f"{', '.join(unexpected[:8])}")
        if bad:
            msg.append(f"{len(bad)} shapes inflation cannot match: {', '.join(bad[:8])}")
        raise CheckpointError(
            f"{source} does not fit {type(model_3d).__name__}: " + "; ".join(msg)
            + " (same architecture and widths needed; pass ignore= for heads)"
        )
    return out


def load_inflated(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    prefix: str = "",
    ignore: Iterable[str] = DEFAULT_IGNORE,
    allow_missing: Iterable[str] = ("fc.", "attnpool.positional_embedding", "proj."),
) -> nn.Module:
    """Load a 2D state-dict file (safetensors or weights-only torch) into a 3D ``model``.

    Args:
        model: 3D encoder (e.g. ``create_image_encoder("resnet18_3d", ...)``).
        path: local file; nothing is downloaded.
        prefix: keep only keys under this prefix (``"visual."`` for a CLIP checkpoint).
        ignore: 2D key prefixes to drop.
        allow_missing: 3D key prefixes that may stay at their initial values.

    Returns:
        ``model``, loaded in place.

    Raises:
        CheckpointError: unreadable file, or weights of another architecture.
    """
    state = load_state_file(path, prefix=prefix)
    inflated = inflate_2d_state_dict(state, model, ignore=ignore, source=str(path))
    load_state_dict_checked(model, inflated, source=str(path), allow_missing=allow_missing)
    return model
