"""Checkpoints and the exported model.

* Resume checkpoints (``checkpoints/last.ckpt``, ``best.ckpt``) are Lightning files written
  atomically (temp file + rename) by :class:`AtomicCheckpointIO`, and read back with
  ``torch.load(weights_only=True)``: they hold only tensors, numbers, strings, lists and dicts
  (the RNG states are stored as tensors), so resuming never runs pickled code.
* The exported model is ``model.safetensors`` (weights only, no code) + ``model.json`` (how to
  rebuild the towers: encoder name/kwargs, channels, embedding size, preprocessing, text
  model). :func:`load_image_encoder` and :func:`load_text_tower` rebuild from these two files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from medimp._io import atomic_path, atomic_write_text
from medimp.models import ProjectionHead, create_image_encoder, create_text_encoder
from medimp.train.config import PretrainConfig, TrainError, config_changes, config_from_dict
from medimp.train.objectives import get_objective

__all__ = [
    "FORMAT",
    "AtomicCheckpointIO",
    "check_checkpoint",
    "check_resume_config",
    "check_world",
    "export_model",
    "load_image_encoder",
    "load_image_tower",
    "load_run_info",
    "load_text_tower",
    "read_checkpoint",
]

FORMAT = "medimp-model/1"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint I/O that never leaves a half-written file, and loads weights only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, path: Any, map_location: Any = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a resume checkpoint with ``weights_only=True`` (no arbitrary unpickling).

    Raises:
        TrainError: the file is missing, truncated or holds something other than plain data.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TrainError(f"{path}: cannot read this checkpoint safely ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); it is damaged or "
                         "was not written by medimp") from None


def check_checkpoint(ckpt: dict[str, Any], config: PretrainConfig, path: Path) -> None:
    """Refuse to resume from a checkpoint of another architecture or method."""
    saved = ckpt.get("medimp_architecture")
    if saved is None:
        raise TrainError(f"{path}: not a medimp pretraining checkpoint")
    want = config.architecture()
    if saved != want:
        diff = [k for k in sorted(set(saved) | set(want)) if saved.get(k) != want.get(k)]
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, config {want.get(k)!r}"
                            for k in diff)
        raise TrainError(f"{path}: checkpoint is from another architecture ({details}); "
                         "resume with the run's own config or start a new run folder")


def check_resume_config(ckpt: dict[str, Any], config: PretrainConfig, path: Path) -> None:
    """Refuse to resume with a configuration that changes what the run computes (epochs,
    learning rate, batch, data...): only the options of ``RUNTIME_OPTIONS`` may change."""

    saved = (ckpt.get("hyper_parameters") or {}).get("config")
    if not isinstance(saved, dict):
        return  # a checkpoint without its config: the architecture check is all there is
    saved = config_from_dict(saved, str(path)).model_dump(mode="json")  # today's defaults
    changes = config_changes(saved, config.model_dump(mode="json"))
    if changes:
        shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4
                                           else "")
        raise TrainError(f"{path.parent.parent}: --resume with a changed configuration ({shown}); "
                         "resume with the run's own config.yaml (only run-time options such as "
                         "stop_after_epochs, num_workers or devices may change: docs/train.md) "
                         "or start a new run with --overwrite or another --out")


def check_world(ckpt: dict[str, Any], world_size: int, path: Path) -> None:
    """Refuse to resume on another number of processes: the global batch (the contrastive
    negatives) and the learning-rate schedule (steps per epoch) would both change."""
    saved = ckpt.get("medimp_world")
    if not isinstance(saved, dict) or int(saved.get("world_size", world_size)) == world_size:
        return
    per = int(saved.get("batch_size", 0)) * int(saved.get("accumulate_grad_batches", 1))
    raise TrainError(
        f"{path}: the run was trained on {saved['world_size']} process(es) (global batch "
        f"{saved.get('global_batch')}) and this resume runs {world_size} (global batch "
        f"{per * world_size}): the contrastive batch and the learning-rate schedule would "
        "change; resume with the same number of processes (devices x num_nodes) or start a "
        "new run")


def export_model(module: nn.Module, run_dir: Path, extra: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` (both atomically) into ``run_dir``."""
    from safetensors.torch import save_file

    state = module.export_state()
    with atomic_path(run_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT})
    info = {"format": FORMAT, **extra}
    atomic_write_text(run_dir / "model.json", json.dumps(info, indent=2, default=str) + "\n")
    return run_dir / "model.safetensors"


def load_run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``model.json`` of a run folder, checked."""
    run_dir = Path(run_dir)
    path = run_dir / "model.json"
    if not path.is_file():
        raise TrainError(f"{run_dir}: no model.json; is this a finished `medimp pretrain` run?")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TrainError(f"{path}: not valid JSON ({exc})") from None
    if info.get("format") != FORMAT:
        raise TrainError(f"{path}: unknown format {info.get('format')!r} (expected {FORMAT})")
    return info


def _load_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = run_dir / "model.safetensors"
    if not path.is_file():
        raise TrainError(f"{run_dir}: model.safetensors missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, truncated or foreign file
        raise TrainError(f"{path}: damaged model file ({exc}); copy the run folder again or "
                         "re-export it (a truncated copy is the usual cause)") from None


def _sub(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], what: str, path: Path,
               strict: bool = True) -> None:
    try:
        missing, unexpected = module.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatch
        raise TrainError(f"{path}: {what} weights do not fit the architecture in model.json "
                         f"({str(exc).splitlines()[-1].strip()})") from None
    if unexpected or (strict and missing):
        raise TrainError(f"{path}: {what} weights do not fit the architecture in model.json "
                         f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def _config(info: dict[str, Any], run_dir: Path) -> PretrainConfig:
    return config_from_dict(info["config"], str(run_dir / "model.json"))


def load_image_encoder(run_dir: str | os.PathLike[str]) -> tuple[nn.Module, Any]:
    """The run's image encoder (eval mode; forward [B,C,D,H,W] -> features [B,F]) and its
    ``PreprocessConfig``. Weights come from safetensors; nothing is unpickled."""

    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    cfg = _config(info, run_dir)
    enc = create_image_encoder(cfg.image_encoder.name, int(info["in_channels"]),
                               **cfg.image_encoder.kwargs)
    _load_into(enc, _sub(_load_weights(run_dir), "image_encoder"), "image encoder",
               run_dir / "model.safetensors")
    return enc.eval(), cfg.preprocess_config()


class ImageTower(nn.Module):
    """Image encoder + projection head: [B,C,D,H,W] -> L2-normalised shared-space embeddings."""

    def __init__(self, encoder: nn.Module, proj: nn.Module) -> None:
        super().__init__()
        self.encoder, self.proj = encoder, proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.proj(self.encoder(x)).float(), dim=-1)


def load_image_tower(run_dir: str | os.PathLike[str]) -> tuple[ImageTower, Any]:
    """Encoder + projection (the embedding compared with text in retrieval) and preprocessing."""

    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    enc, prep = load_image_encoder(run_dir)
    proj = ProjectionHead(enc.num_features, int(info["embed_dim"]))
    _load_into(proj, _sub(_load_weights(run_dir), "image_proj"), "image projection",
               run_dir / "model.safetensors")
    return ImageTower(enc, proj).eval(), prep


def load_text_tower(run_dir: str | os.PathLike[str]) -> Callable[[list[str]], torch.Tensor]:
    """A callable ``list[str] -> [N, embed_dim]`` L2-normalised text embeddings (runs of an
    objective with a text tower, e.g. medimp).

    The frozen part of the text encoder is re-read from the model path recorded in
    ``model.json``; the trained layers and the projection come from ``model.safetensors``.
    """

    run_dir = Path(run_dir)
    info = load_run_info(run_dir)
    cfg = _config(info, run_dir)
    if not get_objective(cfg.method).text_tower:
        raise TrainError(f"{run_dir}: a {cfg.method} run has no text tower")
    text_path = info.get("text_model_path") or cfg.text.path
    enc = create_text_encoder(text_path, pooling=cfg.text.pooling, freeze=cfg.text.freeze,
                              cache=False)
    state = _load_weights(run_dir)
    _load_into(enc, _sub(state, "text_encoder"), "text encoder", run_dir / "model.safetensors",
               strict=False)
    proj = ProjectionHead(enc.num_features, int(info["embed_dim"]))
    _load_into(proj, _sub(state, "text_proj"), "text projection", run_dir / "model.safetensors")
    enc.eval()
    proj.eval()

    @torch.no_grad()
    def embed_texts(texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return torch.nn.functional.normalize(proj(enc(list(texts))).float(), dim=-1)

    return embed_texts
