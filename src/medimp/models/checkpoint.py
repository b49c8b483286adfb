"""Loading weights safely: state-dict files without unpickling, and checked ``load_state_dict``.

Files are read with safetensors, or with ``torch.load(weights_only=True)`` (tensors and plain
containers only; no arbitrary code runs). :func:`load_state_dict_checked` compares every key and
shape before touching the model, so a checkpoint of another architecture gives one clear error
naming what is missing, unexpected or of the wrong shape, and leaves the model unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from medimp.models._errors import CheckpointError

__all__ = ["load_state_dict_checked", "load_state_file"]

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module")


def load_state_file(path: str | os.PathLike[str], prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    A dict wrapping the weights under ``state_dict``/``model``/``model_state_dict``/``module``
    (Lightning, training scripts) is unwrapped. With ``prefix`` (e.g. ``"visual."`` for a CLIP
    checkpoint) only keys starting with it are kept, with the prefix removed.

    Raises:
        CheckpointError: missing file, unreadable file, or no tensors under ``prefix``.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist or is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(p))
        else:
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure becomes one clear error
        raise CheckpointError(
            f"cannot read checkpoint {p} as safetensors or as a weights-only torch file ({exc}); "
            "pickled full models are refused: save model.state_dict() instead"
        ) from exc
    for _ in range(2):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {p} does not hold a state dict (got {type(obj)})")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        where = f" under prefix {prefix!r}" if prefix else ""
        raise CheckpointError(f"checkpoint {p} holds no tensors{where}")
    return state


def _listing(title: str, keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit]) + (f", ... (+{len(keys) - limit} more)"
                                        if len(keys) > limit else "")
    return f"{len(keys)} {title}: {shown}"


def load_state_dict_checked(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "checkpoint",
    allow_missing: Iterable[str] = (),
    allow_unexpected: Iterable[str] = (),
) -> None:
    """Load ``state`` into ``model`` after checking every key and shape; all or nothing.

    Args:
        model: the module to load into.
        state: the state dict.
        source: what ``state`` is (a path), used in the error message.
        allow_missing: key prefixes the model has that ``state`` may lack (a new head).
        allow_unexpected: key prefixes of ``state`` to ignore (an old head).

    Raises:
        CheckpointError: naming missing keys, unexpected keys and shape mismatches.
    """
    target = model.state_dict()
    allow_missing = tuple(allow_missing)
    allow_unexpected = tuple(allow_unexpected)
    missing = [k for k in target if k not in state and not k.startswith(allow_missing)
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target and not k.startswith(allow_unexpected)]
    shapes = [f"{k} {list(state[k].shape)} vs model {list(target[k].shape)}"
              for k in state if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        parts = [p for p in (
            _listing("missing keys", missing) if missing else "",
            _listing("unexpected keys", unexpected) if unexpected else "",
            _listing("shape mismatches", shapes) if shapes else "",
        ) if p]
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__} (another architecture or size?): "
            + "; ".join(parts)
        )
    model.load_state_dict({k: v for k, v in state.items() if k in target}, strict=False)
