"""``medimp export``: a run's image tower as TorchScript, ONNX or a MONAI bundle.

The exported model takes what medimp's preprocessing makes of an exam (docs/data-pipeline.md):
``image`` ``[B, C, D, H, W]`` float32 (the phases as channels, a missing phase all zero) and
``phase_mask`` ``[B, C]`` float32 (1: acquired, 0: missing), and returns the embeddings
``embed`` gives (``[B, num_features]`` encoder features, or with ``projected`` the unit vectors
of the shared image-text space). How the missing phases are shown to the encoder
(:func:`medimp.data.pipeline.phases.encoder_input`) is part of the exported graph; the preprocessing
(orientation, spacing, per-exam intensity scale, window, phase order) is recorded in
``medimp_export.json`` and the model card, since it runs before the model.

Every export is checked before anything is written: the exported model, reloaded from its file
(TorchScript with ``torch.jit.load``, ONNX with onnxruntime, a bundle through MONAI's
``ConfigParser``), must give medimp's own embeddings to ``atol`` (1e-5) on every exam of the
``cohort`` (or on random inputs without one). The output folder follows medimp's rules
(:func:`medimp._io.output_dir`): new or ``overwrite``, replaced only once complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medimp import __version__
from medimp._io import atomic_path, atomic_write_text, output_dir
from medimp.data import ExamDataset, read_cohort
from medimp.train.checkpoint import load_image_encoder, load_image_tower, load_run_info
from medimp.train.config import TrainError
from medimp.train.datamodule import collate

__all__ = ["EXPORT_FORMATS", "ExportedEncoder", "export_run"]

EXPORT_FORMATS = ("torchscript", "onnx", "bundle")
_OURS = {"torchscript": ["model.ts"], "onnx": ["model.onnx", "model.onnx.data"],
         "bundle": ["configs", "models", "docs", "sample", "LICENSE"]}
_COMMON = ["medimp_export.json", "MODEL_CARD.md"]


class ExportedEncoder(nn.Module):
    """``(image [B, C, D, H, W], phase_mask [B, C]) -> embeddings``: the encoder input of
    :func:`medimp.data.pipeline.phases.encoder_input` written with tensor operations only, so that
    tracing and ONNX keep it, followed by the run's image encoder (or tower)."""

    def __init__(self, model: nn.Module, mask_mode: str) -> None:
        super().__init__()
        if mask_mode not in ("zero", "channels"):
            raise TrainError(f"unknown phase_mask mode {mask_mode!r} in the run's config")
        self.model = model
        self.channels = mask_mode == "channels"

    def forward(self, image: torch.Tensor, phase_mask: torch.Tensor) -> torch.Tensor:
        m = phase_mask.to(image.dtype)[:, :, None, None, None]
        x = image * m
        if self.channels:
            x = torch.cat([x, m.expand_as(image)], dim=1)
        return self.model(x).float()


def _load(run_dir: Path, projected: bool) -> tuple[ExportedEncoder, Any, dict[str, Any]]:

    info = load_run_info(run_dir)
    model, prep = load_image_tower(run_dir) if projected else load_image_encoder(run_dir)
    mask_mode = str((info.get("config") or {}).get("phase_mask", "zero"))
    return ExportedEncoder(model, mask_mode).eval(), prep, info


def _inputs(cohort: Path | None, prep: Any, info: dict[str, Any], batch_size: int,
            cache_dir: Path | None) -> list[tuple[list[tuple[str, str]], torch.Tensor,
                                                  torch.Tensor]]:
    """Batches ``(keys, image, phase_mask)`` of the cohort's exams, preprocessed as ``embed``
    does; without a cohort, two random batches of the run's input shape."""
    if cohort is None:
        n_phases = len(info.get("phases") or []) or int(info["in_channels"])
        g = torch.Generator().manual_seed(0)
        out = []
        for first, b in ((0, 2), (2, 3)):
            image = torch.rand((b, n_phases, *prep.shape), generator=g)
            mask = torch.ones((b, n_phases))
            mask[0, -1] = 0.0  # a missing phase
            out.append(([(f"random{first + i}", "-") for i in range(b)], image, mask))
        return out
    from torch.utils.data import DataLoader


    c = read_cohort(cohort)
    if info.get("phases") and list(c.study.phase_names) != list(info["phases"]):
        raise TrainError(f"{cohort}: phases {list(c.study.phase_names)} differ from the run's "
                         f"{info['phases']}; check the export on a cohort of the same phases")
    keys = [(str(p), str(e)) for p, e in c.exam_keys()]
    if not keys:
        raise TrainError(f"{cohort}: no exam with images to check the export on")
    ds = ExamDataset(c, prep, cache_dir=cache_dir, augment=None, seed=0, keys=keys)
    out = []
    for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate):
        out.append((list(zip(batch["patient_id"], batch["exam"], strict=True)),
                    batch["image"].float(), batch["phase_mask"].float()))
    return out


def _reference(run_dir: Path, cohort: Path | None, model: ExportedEncoder, batches: list, *,
               projected: bool, cache_dir: Path | None) -> dict[tuple[str, str], np.ndarray]:
    """medimp's own embeddings of the check inputs: ``medimp embed`` on the cohort, or the
    loaded model on the random inputs."""
    if cohort is not None:
        from medimp.train.embed import embed

        df = embed(run_dir, cohort, projected=projected, cache_dir=cache_dir)
        df = df[df["level"] == "exam"]
        cols = [c for c in df.columns if c.startswith("e") and c[1:].isdigit()]
        return {(str(p), str(e)): v for p, e, v in
                zip(df["patient_id"], df["exam"], df[cols].to_numpy(np.float32), strict=True)}
    ref = {}
    with torch.no_grad():
        for keys, image, mask in batches:
            for k, v in zip(keys, model(image, mask).numpy(), strict=True):
                ref[k] = v
    return ref


def _compare(run: Any, batches: list, ref: dict[tuple[str, str], np.ndarray],
             what: str, atol: float) -> float:
    """Largest absolute difference between ``run(image, mask)`` and ``ref``; raises above
    ``atol``."""
    worst = 0.0
    for keys, image, mask in batches:
        got = np.asarray(run(image, mask), dtype=np.float32)
        want = np.stack([ref[k] for k in keys])
        if got.shape != want.shape:
            raise TrainError(f"the {what} gives embeddings of shape {list(got.shape)}, medimp "
                             f"{list(want.shape)}")
        worst = max(worst, float(np.abs(got - want).max()))
    if not worst <= atol:
        raise TrainError(f"the {what} differs from medimp's embeddings by up to {worst:.3g} "
                         f"(tolerance {atol:g}); nothing was written")
    return worst


def _trace(model: ExportedEncoder, example: tuple[torch.Tensor, torch.Tensor]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarning / TorchScript deprecation notices
        return torch.jit.trace(model, example, check_trace=False)


def _write_torchscript(model: ExportedEncoder, example: tuple, path: Path) -> Any:

    traced = _trace(model, example)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return loaded(image, mask).numpy()

    return run


def _write_onnx(model: ExportedEncoder, example: tuple, path: Path) -> Any:
    import importlib.util

    missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainError(f"--format onnx needs {', '.join(missing)}: pip install "
                         "'medimp[onnx]' (or use --format torchscript / bundle)")
    import onnxruntime as ort

    batch = torch.export.Dim("batch", min=1, max=1024)
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed" notices
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model, example, dynamo=True, input_names=["image", "phase_mask"],
                output_names=["embedding"], external_data=False, verbose=False,
                dynamic_shapes={"image": {0: batch}, "phase_mask": {0: batch}})
    finally:
        quiet.setLevel(level)
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(image: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        return session.run(None, {"image": image.numpy(), "phase_mask": mask.numpy()})[0]

    return run


def export_run(run_dir: str | os.PathLike[str], out: str | os.PathLike[str], fmt: str, *,
               cohort: str | os.PathLike[str] | None = None, projected: bool = False,
               overwrite: bool = False, atol: float = 1e-5, batch_size: int = 4,
               cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Export the image tower of ``run_dir`` into the folder ``out``.

    Args:
        run_dir: a finished ``medimp pretrain`` run.
        out: the folder to write (new or empty; ``overwrite`` replaces an earlier export).
        fmt: ``torchscript`` (``model.ts``), ``onnx`` (``model.onnx``, needs the ``onnx``
            extra) or ``bundle`` (a MONAI bundle: ``configs/metadata.json``,
            ``configs/inference.json``, ``models/model.ts``, ``docs/README.md``, ``sample/``).
        cohort: exams to check the export on (every exam); None: random inputs.
        projected: export the shared-space embeddings instead of the encoder's features.
        atol: the largest difference from medimp's embeddings accepted.
        batch_size, cache_dir: of the check's preprocessing (as ``embed``).

    Returns:
        The contents of ``medimp_export.json`` (format, files, input and output, the
        preprocessing, the check: exams and largest difference).

    Raises:
        TrainError: unknown format, incomplete run, missing optional package, or an export
            that does not reproduce medimp's embeddings (nothing is written then).
    """

    if fmt not in EXPORT_FORMATS:
        raise TrainError(f"unknown export format {fmt!r}; choose one of {list(EXPORT_FORMATS)}")
    if not atol > 0:
        raise TrainError(f"the tolerance must be positive, got {atol}")
    run_dir = Path(run_dir)
    if run_dir.resolve() in Path(out).resolve().parents:
        raise TrainError(f"{out} is inside the run folder {run_dir}: an export there would "
                         "mix with the run (and block its --resume); choose a folder outside it")
    model, prep, info = _load(run_dir, projected)
    cohort_path = Path(cohort) if cohort is not None else None
    if cache_dir is None and cohort_path is not None:
        from medimp.train.embed import run_cache_dir

        cache_dir = run_cache_dir(info)  # as embed chooses, for the inputs and the reference
    cache = Path(cache_dir) if cache_dir is not None else None
    batches = _inputs(cohort_path, prep, info, batch_size, cache)
    ref = _reference(run_dir, cohort_path, model, batches, projected=projected,
                     cache_dir=cache)
    example = (batches[0][1][:2], batches[0][2][:2])
    keep = [run_dir, *([cohort_path] if cohort_path is not None else [])]
    with output_dir(out, overwrite=overwrite, what="model export", error=TrainError,
                    keep=keep, ours=_OURS[fmt] + _COMMON) as tmp:
        if fmt == "torchscript":
            run = _write_torchscript(model, example, tmp / "model.ts")
            files = ["model.ts"]
        elif fmt == "onnx":
            run = _write_onnx(model, example, tmp / "model.onnx")
            files = ["model.onnx"]
        else:
            from medimp.train._bundle import write_bundle

            _write_torchscript(model, example, tmp / "models" / "model.ts")
            run = write_bundle(tmp, info, prep, projected, batches[0])
            files = ["configs/metadata.json", "configs/inference.json", "models/model.ts",
                     "docs/README.md"]
        worst = _compare(run, batches, ref, f"exported {fmt} model", atol)
        record = _record(run_dir, fmt, files, info=info, prep=prep, projected=projected,
                         model=model, batches=batches, cohort=cohort_path, worst=worst,
                         atol=atol)
        atomic_write_text(tmp / "medimp_export.json", json.dumps(record, indent=2) + "\n")
        card = model_card(record)
        atomic_write_text(tmp / "MODEL_CARD.md", card)
        if fmt == "bundle":
            atomic_write_text(tmp / "docs" / "README.md", card)
    return record


def _record(run_dir: Path, fmt: str, files: list[str], *, info: dict[str, Any], prep: Any,
            projected: bool, model: ExportedEncoder, batches: list, cohort: Path | None,
            worst: float, atol: float) -> dict[str, Any]:
    n_phases = int(batches[0][1].shape[1])
    with torch.no_grad():
        dim = int(model(batches[0][1][:1], batches[0][2][:1]).shape[1])
    return {
        "format": fmt, "files": files, "exported": _now(),
        "run": str(run_dir.resolve()), "method": info.get("method"),
        "image_encoder": info.get("image_encoder"), "epochs_trained": info.get("epochs_trained"),
        "cohort_fingerprint": info.get("cohort_fingerprint"),
        "train_patients": len(info.get("train_patients") or []),
        "val_patients": len(info.get("val_patients") or []),
        "inputs": {
            "image": {"shape": ["B", n_phases, *prep.shape], "dtype": "float32",
                      "channels": list(info.get("phases") or [])},
            "phase_mask": {"shape": ["B", n_phases], "dtype": "float32",
                           "meaning": "1 = phase acquired, 0 = missing (its channel is zero)"}},
        "output": {"embedding": {"shape": ["B", dim], "dtype": "float32",
                                 "space": "projected (unit vectors, image-text space)"
                                 if projected else "encoder features (before projection)"}},
        "phase_mask_mode": "channels" if model.channels else "zero",
        "preprocess": prep.model_dump(mode="json"),
        "check": {"exams": sum(len(k) for k, _, _ in batches),
                  "on": str(cohort) if cohort is not None else "random inputs",
                  "max_abs_diff": worst, "atol": atol},
        "versions": {"medimp": _version(), "torch": torch.__version__},
    }


def model_card(record: dict[str, Any]) -> str:
    """A model card (Markdown) for an export, from its ``medimp_export.json`` record."""
    pre = record["preprocess"]
    enc = record.get("image_encoder") or {}
    check = record["check"]
    inp = record["inputs"]
    on_cohort = check["on"] != "random inputs"
    reference = ("medimp's own embeddings (`medimp embed`)" if on_cohort else
                 "the outputs of the run's encoder as medimp loads it (no cohort was given: "
                 "medimp's preprocessing and `medimp embed` were not part of the check)")
    return f"""# Model card: medimp image encoder ({record.get('method')})

## What it is
A 3D image encoder of multi-phase contrast-enhanced kidney MRI, pretrained by medimp
(method `{record.get('method')}`, encoder `{enc.get('name')}` {json.dumps(enc.get('kwargs', {}))},
{record.get('epochs_trained')} epochs, {record.get('train_patients')} training and
{record.get('val_patients')} validation patients; training cohort fingerprint
`{record.get('cohort_fingerprint')}`). Exported as `{record['format']}`
({', '.join(record['files'])}) on {record['exported']} from the run `{record['run']}`.

## Inputs and output
- `image`: float32 {inp['image']['shape']}, channels = phases {inp['image']['channels']}
  in this order; a missing phase is an all-zero channel.
- `phase_mask`: float32 {inp['phase_mask']['shape']}: {inp['phase_mask']['meaning']}
  (shown to the encoder as `{record['phase_mask_mode']}`, inside the exported graph).
- output `embedding`: float32 {record['output']['embedding']['shape']},
  {record['output']['embedding']['space']}.

## Preprocessing (run it before the model; medimp's `load_exam_volume` does it)
Each phase: reoriented to `{pre.get('orientation')}`, resampled to {pre.get('spacing')} mm
({pre.get('interpolation')}); phases put on the reference phase's grid; one intensity scale per
exam, `(x - p{pre['percentiles'][0]:g}) / (p{pre['percentiles'][1]:g} - p{pre['percentiles'][0]:g})`
of the reference phase (`{pre.get('reference_phase') or 'the first phase'}`), clip
{pre.get('clip')}; a {pre.get('shape')} window around the
{'volume centre' if pre.get('crop') == 'center' else 'foreground'}, padded with raw 0.
The full settings are `preprocess` in `medimp_export.json` (a `medimp.data.PreprocessConfig`).

## Check
Reloaded from its file, the export gave {reference} on
{check['exams']} {'exams' if on_cohort else 'inputs'} ({check['on']}) to a largest absolute \
difference of {check['max_abs_diff']:.2e} (tolerance {check['atol']:g}).

## Intended use and limits
Research on representation learning for kidney-transplant MRI. Not a medical device; not for
diagnosis. An encoder pretrained on simulated volumes (`medimp simulate`) has learnt the
simulator, not patients. Embeddings are comparable only between exams preprocessed with the
settings above. Versions: {json.dumps(record['versions'])}.
"""


def _version() -> str:

    return str(__version__)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
