"""Pretrained 2D weights into a 3D encoder: OpenAI CLIP (TorchScript), open_clip, plain ResNet.

:func:`load_pretrained_2d` reads a 2D checkpoint in one of three layouts, takes its image tower
and inflates it into a 3D encoder (:func:`medimp.models.image.inflate.inflate_2d_state_dict`:
kernels repeated along depth and divided by depth; the RGB stem summed and spread over the
phases):

* **OpenAI CLIP** (``RN50.pt``): a TorchScript archive. Its weights are read by
  :func:`read_script_archive` *without running or even parsing its code*: the archive's
  ``data.pkl`` is unpickled by a restricted unpickler that only accepts the tensor-rebuild
  functions, the storage types, ``OrderedDict`` and TorchScript's list builders; every
  ``__torch__.*`` class becomes an inert attribute holder; any other global (``os.system``,
  ``builtins.eval``...) is refused. The ``code/`` folder and ``constants.pkl`` are never read.
* **open_clip** checkpoints (``{"state_dict": {"module.visual.conv1.weight": ...}}`` or a plain
  ``{"visual.*": ...}`` state dict), read with ``torch.load(weights_only=True)`` or safetensors.
* **plain 2D ResNet** state dicts (torchvision / timm / MONAI names: ``conv1``, ``bn1``,
  ``layerK.i.convJ``, ``layerK.i.downsample.0``, ``fc``), for ``resnet*_3d``.

The layout is recognised from the keys (``visual.`` = CLIP); a layout that does not fit the
encoder is a :class:`CheckpointError` naming the first missing and surplus keys.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medimp.models._errors import CheckpointError

__all__ = ["load_pretrained_2d", "read_2d_checkpoint", "read_script_archive"]

_STORAGES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _ScriptObject:
    """An inert stand-in for a TorchScript class: it only stores the attributes it is given."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


def _list(x: Any, *_: Any) -> list[Any]:
    return list(x)


def _same(x: Any, *_: Any) -> Any:
    return x


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): _list,
    ("torch.jit._pickle", "build_doublelist"): _list,
    ("torch.jit._pickle", "build_boollist"): _list,
    ("torch.jit._pickle", "build_tensorlist"): _list,
    ("torch.jit._pickle", "restore_type_tag"): _same,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.source = archive, prefix, source

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return type(name, (_ScriptObject,), {})
        if module == "torch" and name in _STORAGES:
            return _STORAGES[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise CheckpointError(
            f"{self.source}: the TorchScript archive references {module}.{name}, which a "
            "weights file never needs; refused (only tensors, storages and TorchScript module "
            "attributes are read)")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise CheckpointError(f"{self.source}: unexpected persistent id {pid!r}")
        dtype, key = pid[1], str(pid[2])
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{self.source}: unexpected storage type {dtype!r}")
        try:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        except KeyError as exc:
            raise CheckpointError(f"{self.source}: storage {key} missing from the archive "
                                  "(truncated download?)") from exc
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else \
            torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def _tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 64:
        return
    if isinstance(obj, torch.Tensor):
        out[prefix.rstrip(".")] = obj
    elif isinstance(obj, _ScriptObject):
        _tensors(obj.__dict__.get("_state"), prefix, out, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and not k.startswith("_"):
                _tensors(v, f"{prefix}{k}.", out, depth + 1)


def is_script_archive(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript archive (a zip with ``constants.pkl`` or a ``code/`` folder)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())


def read_script_archive(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive (e.g. OpenAI's ``RN50.pt``),
    read from its ``data.pkl`` with a restricted unpickler; its code is never run or read.

    Raises:
        CheckpointError: not a readable archive, or a ``data.pkl`` that references anything
            other than tensors, storages and module attributes.
    """
    p = Path(path)
    try:
        archive = zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{p}: not a readable TorchScript archive ({exc})") from exc
    with archive:
        names = [n for n in archive.namelist() if n.endswith("data.pkl")
                 and n.count("/") == 1]
        if not names:
            raise CheckpointError(f"{p}: no data.pkl in the archive; not a TorchScript file")
        prefix = names[0][: -len("data.pkl")]
        try:
            root = _RestrictedUnpickler(archive.read(names[0]), archive, prefix, str(p)).load()
        except CheckpointError:
            raise
        except Exception as exc:  # damaged pickle stream
            raise CheckpointError(f"{p}: data.pkl unreadable ({type(exc).__name__}: {exc})"
                                  ) from exc
    out: dict[str, torch.Tensor] = {}
    _tensors(root, "", out)
    if not out:
        raise CheckpointError(f"{p}: the TorchScript archive holds no tensors")
    return out


def read_2d_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Read a 2D checkpoint and return its image tower's state dict and its layout.

    Returns:
        ``(state, layout)`` with layout ``"openai_clip"`` (TorchScript), ``"open_clip"``
        (keys under ``visual.``, a DDP ``module.`` prefix removed) or ``"resnet2d"``.
    """
    from medimp.models.checkpoint import load_state_file

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"pretrained weights {p} do not exist or are not a file")
    if is_script_archive(p):
        state, layout = read_script_archive(p), "openai_clip"
    else:
        state, layout = load_state_file(p), "resnet2d"
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        layout = "openai_clip" if layout == "openai_clip" else "open_clip"
    elif layout == "openai_clip":
        raise CheckpointError(f"{p}: TorchScript archive without a 'visual.' image tower; "
                              "give OpenAI's CLIP ResNet (e.g. RN50.pt)")
    return state, layout


def load_pretrained_2d(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Inflate the 2D weights at ``path`` into the 3D ``model``, in place (all or nothing).

    CLIP layouts need ``clip_rn50_3d`` with the same widths and layers; plain ResNets a
    ``resnet*_3d`` of the same depth and widths. Heads (``fc``), CLIP's 2D position grid and
    a 3D ``fc`` the 2D one cannot fill keep their initial values.

    Raises:
        CheckpointError: unreadable file, or weights whose keys or shapes do not fit, naming
            the first missing and surplus keys.
    """
    from medimp.models.checkpoint import load_state_dict_checked
    from medimp.models.image.inflate import DEFAULT_IGNORE, inflate_2d_state_dict

    state, layout = read_2d_checkpoint(path)
    source = f"{path} ({layout} layout)"
    target = model.state_dict()
    surplus = [k for k in state if k not in target and not k.startswith(DEFAULT_IGNORE)]
    missing = [k for k in target if k not in state and not k.startswith(DEFAULT_IGNORE)
               and not k.endswith("num_batches_tracked")]
    if surplus or missing:
        parts = []
        if missing:
            parts.append(f"first missing keys: {', '.join(missing[:5])} ({len(missing)} in all)")
        if surplus:
            parts.append(f"first surplus keys: {', '.join(surplus[:5])} ({len(surplus)} in all)")
        raise CheckpointError(
            f"{source} does not fit {type(model).__name__}: " + "; ".join(parts)
            + " (CLIP weights need clip_rn50_3d, plain ResNet weights a resnet*_3d of the same "
              "depth and widths)")
    inflated = inflate_2d_state_dict(state, model, source=source)
    load_state_dict_checked(model, inflated, source=source, allow_missing=DEFAULT_IGNORE)
    return model
