"""Preprocessing of one exam: orient, resample, normalise per exam, crop/pad, stack phases.

Each phase volume is wrapped in a MONAI ``MetaTensor`` (array + affine) and goes through MONAI's
``Orientation`` (to RAS), ``Spacing`` (to the target voxel size) and, when a phase does not share
the reference phase's grid, ``ResampleToMatch``. The phases are then stacked as channels.

Intensities are normalised **once per exam**: robust percentiles (default 1-99) are taken from
the reference phase (by default the first phase of ``study.yaml``, the pre-contrast one) and the
same affine map is applied to every phase. Normalising each phase on its own would erase the
enhancement between phases, which is the perfusion and filtration signal that the encoder must
see (docs/design.md). MONAI's ``ScaleIntensityRangePercentiles`` computes its percentiles per image,
so this one step is written here. A constant (e.g. all-zero) volume maps to zeros, never NaN.

Finally a window of the target shape is cut around the volume centre or the centre of the
foreground's bounding box (``SpatialCrop``) and padded if needed (``ResizeWithPadOrCrop``); the
padding is raw intensity 0 expressed in the normalised units.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResampleToMatch, ResizeWithPadOrCrop, Spacing, SpatialCrop
from monai.transforms.utils import generate_spatial_bounding_box
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medimp.data._errors import MedimpDataError

if TYPE_CHECKING:
    from medimp.data.pipeline.cache import PreprocessCache

__all__ = [
    "PreprocessConfig",
    "PreprocessError",
    "exam_phases",
    "load_exam_volume",
    "preprocess_exam",
]

log = logging.getLogger(__name__)

_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class PreprocessError(MedimpDataError):
    """A volume cannot be preprocessed (non-finite voxels, bad affine, no phase...)."""


class PreprocessConfig(BaseModel):
    """How image volumes become network inputs (every field has a default).

    Array axes after preprocessing are the axes of the ``orientation`` code (for RAS: left→right,
    posterior→anterior, inferior→superior); ``spacing`` and ``shape`` follow the same order.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    orientation: str | None = Field(
        "RAS", description="Axis codes to reorient to (MONAI Orientation); None keeps the file's."
    )
    spacing: tuple[float, float, float] | None = Field(
        (6.0, 6.0, 6.0),
        description="Target voxel size in mm; None keeps each file's spacing. The default with "
        "shape 32³ spans ~19 cm, a whole abdominal field of view on a CPU; on a GPU use e.g. "
        "2 mm with shape 96³.",
    )
    shape: tuple[int, int, int] = Field(
        (32, 32, 32), description="Output spatial shape (D, H, W) after crop/pad."
    )
    crop: Literal["center", "foreground"] = Field(
        "center",
        description="Where the output window sits: the volume centre, or the centre of the "
        "bounding box of the foreground (voxels above foreground_threshold in any phase).",
    )
    foreground_threshold: float = Field(
        0.2, description="Foreground = normalised intensity above this (crop='foreground')."
    )
    normalisation: Literal["percentile", "none"] = Field(
        "percentile",
        description="'percentile': (x - p_low) / (p_high - p_low) with the percentiles of the "
        "exam's reference phase, applied to all phases; 'none': raw intensities.",
    )
    percentiles: tuple[float, float] = Field(
        (1.0, 99.0), description="Low and high percentiles (0-100) of the reference phase."
    )
    percentile_nonzero: bool = Field(
        False, description="Take the percentiles over non-zero voxels only (padded scans)."
    )
    clip: tuple[float, float] | None = Field(
        None,
        description="Clip normalised intensities to (low, high); None keeps enhanced values "
        "above the pre-contrast range.",
    )
    reference_phase: str | None = Field(
        None,
        description="Phase whose percentiles set the exam's intensity scale; None = the first "
        "phase (pre-contrast) of study.yaml. If it is missing, the first present phase is used.",
    )
    phases: tuple[str, ...] | None = Field(
        None, description="Phases (channels, in order) to use; None = all phases of study.yaml."
    )
    phase_mode: Literal["stack", "single"] = Field(
        "stack",
        description="'stack': one sample per exam, phases as channels with a mask for missing "
        "ones; 'single': one sample per volume, C = 1 (the original MEDIMP mode).",
    )
    interpolation: Literal["bilinear", "nearest"] = Field(
        "bilinear", description="Interpolation used when resampling."
    )

    @field_validator("shape")
    @classmethod
    def _positive_shape(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 1 for s in v):
            raise ValueError(f"shape must be positive, got {v}")
        return v

    @field_validator("spacing")
    @classmethod
    def _positive_spacing(cls, v: tuple[float, float, float] | None) -> Any:
        if v is not None and any(not np.isfinite(s) or s <= 0 for s in v):
            raise ValueError(f"spacing must be positive millimetres, got {v}")
        return v

    @field_validator("percentiles")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {v}")
        return v

    def cache_params(self) -> dict[str, Any]:
        """The parameters that change a preprocessed exam (``phase_mode`` does not)."""
        return self.model_dump(mode="json", exclude={"phase_mode"})

    def canonical_json(self) -> str:
        """Canonical JSON of :meth:`cache_params` (sorted keys), part of every cache key."""
        return json.dumps(self.cache_params(), sort_keys=True, separators=(",", ":"))


def exam_phases(config: PreprocessConfig, study_phases: Sequence[str]) -> list[str]:
    """The phases (channel order) that ``config`` selects from the study's phases."""
    if config.phases is None:
        return list(study_phases)
    unknown = [p for p in config.phases if p not in study_phases]
    if unknown:
        raise PreprocessError(
            f"PreprocessConfig.phases names {unknown}, which study.yaml does not list "
            f"(phases: {list(study_phases)}); fix the preprocessing config"
        )
    return list(config.phases)


def _spatial(
    array: np.ndarray, affine: np.ndarray, config: PreprocessConfig, where: str
) -> MetaTensor:
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise PreprocessError(f"{where}: expected a 3D volume, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise PreprocessError(
            f"{where}: {int((~np.isfinite(arr)).sum())} NaN/Inf voxels; fix or re-export the image"
        )
    aff = np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.isfinite(aff).all() or abs(np.linalg.det(aff[:3, :3])) < 1e-12:
        raise PreprocessError(
            f"{where}: the affine is missing, singular or not 4x4; fix the header"
        )
    img = MetaTensor(
        torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[None],
        affine=torch.from_numpy(aff),
    )
    if config.orientation:
        # affines are RAS+ world coordinates (nibabel's convention; the readers convert DICOM)
        img = Orientation(axcodes=config.orientation, labels=_RAS_LABELS)(img)
    if config.spacing is not None:
        img = Spacing(pixdim=config.spacing, mode=config.interpolation, dtype=np.float32)(img)
    return img


def _same_grid(a: MetaTensor, b: MetaTensor) -> bool:
    return a.shape == b.shape and bool(
        np.allclose(np.asarray(a.affine), np.asarray(b.affine), atol=1e-3)
    )


def _intensity_map(ref: torch.Tensor, config: PreprocessConfig) -> tuple[float, float]:
    """(offset, scale) such that (x - offset) / scale is the exam's normalised intensity."""
    if config.normalisation == "none":
        return 0.0, 1.0
    vals = ref.reshape(-1)
    if config.percentile_nonzero:
        nz = vals[vals != 0]
        vals = nz if nz.numel() else vals
    lo, hi = np.percentile(vals.numpy().astype(np.float64), config.percentiles)
    scale = float(hi - lo)
    if not np.isfinite(scale) or scale <= 1e-6 * max(1.0, abs(float(hi))):
        # constant reference (e.g. the original's all-zero dummy): no contrast to scale by.
        # Subtract the level (the volume becomes 0, never NaN) and express other phases
        # relative to it (scale 1 when the level is 0).
        level = abs(float(lo))
        return float(lo), level if level > 1e-6 else 1.0
    return float(lo), scale


def preprocess_exam(
    volumes: Mapping[str, tuple[np.ndarray, np.ndarray] | None],
    phases: Sequence[str],
    config: PreprocessConfig,
    where: str = "exam",
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocess the phases of one exam into a ``[C, D, H, W]`` float32 array and a mask.

    Args:
        volumes: phase -> ``(array 3D, affine 4x4)``, or ``None``/absent for a missing phase.
        phases: channel order (e.g. ``["pre", "arterial", "tubular"]``).
        config: the preprocessing parameters.
        where: a description used in error messages (e.g. "patient P001 exam D15").

    Returns:
        ``(image, phase_mask)``: missing phases are zero channels with ``phase_mask`` False.

    Raises:
        PreprocessError: no phase present, non-finite voxels, or a bad affine.
    """
    if config.reference_phase is not None and config.reference_phase not in phases:
        raise PreprocessError(
            f"reference_phase {config.reference_phase!r} is not one of the phases {list(phases)}",
            fix="set PreprocessConfig.reference_phase to a phase of study.yaml (or null)",
        )
    present = [p for p in phases if volumes.get(p) is not None]
    if not present:
        raise PreprocessError(f"{where}: none of the phases {list(phases)} has an image")
    ref_name = config.reference_phase or phases[0]
    if ref_name not in present:
        log.debug("%s: reference phase %r missing; scaling by %r", where, ref_name, present[0])
        ref_name = present[0]
    imgs: dict[str, MetaTensor] = {}
    for p in [ref_name, *[q for q in present if q != ref_name]]:
        arr, aff = volumes[p]  # type: ignore[misc]
        img = _spatial(arr, aff, config, f"{where} phase {p}")
        if p != ref_name and not _same_grid(img, imgs[ref_name]):
            img = ResampleToMatch(mode=config.interpolation, dtype=np.float32)(
                img, img_dst=imgs[ref_name]
            )
        imgs[p] = img
    offset, scale = _intensity_map(imgs[ref_name][0].as_tensor(), config)
    spatial = imgs[ref_name].shape[1:]
    stack = torch.zeros((len(phases), *spatial), dtype=torch.float32)
    mask = np.zeros(len(phases), dtype=bool)
    for i, p in enumerate(phases):
        if p in imgs:
            stack[i] = (imgs[p][0].as_tensor().to(torch.float32) - offset) / scale
            mask[i] = True
    if config.clip is not None:
        stack[torch.from_numpy(mask)] = stack[torch.from_numpy(mask)].clamp(*config.clip)
    pad_value = (0.0 - offset) / scale
    if config.clip is not None:
        pad_value = float(np.clip(pad_value, *config.clip))
    out = _crop(stack, mask, config, pad_value)
    out[~torch.from_numpy(mask)] = 0.0
    image = out.numpy().astype(np.float32, copy=False)
    if not np.isfinite(image).all():  # pragma: no cover - guarded above; a last safety net
        raise PreprocessError(f"{where}: preprocessing produced non-finite values")
    return np.ascontiguousarray(image), mask


def _crop(
    stack: torch.Tensor, mask: np.ndarray, config: PreprocessConfig, pad_value: float
) -> torch.Tensor:
    shape = tuple(config.shape)
    if config.crop == "foreground":
        thr = config.foreground_threshold
        start, end = generate_spatial_bounding_box(
            stack[torch.from_numpy(mask)], select_fn=lambda x: x > thr
        )
        if any(e > s for s, e in zip(start, end, strict=True)):
            center = [(s + e) // 2 for s, e in zip(start, end, strict=True)]
            stack = SpatialCrop(roi_center=center, roi_size=shape)(stack)
    resize = ResizeWithPadOrCrop(spatial_size=shape, mode="constant", value=pad_value)
    out = resize(stack)
    return torch.as_tensor(out).clone()


def load_exam_volume(
    cohort: Any,
    patient_id: str,
    exam: str,
    preprocess: PreprocessConfig | None = None,
    cache: PreprocessCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read and preprocess all phases of one exam of a cohort, without a Dataset.

    Args:
        cohort: a ``medimp.data.Cohort`` (from ``read_cohort``).
        patient_id: the patient (string id as in manifest.csv).
        exam: the exam label (e.g. "D15").
        preprocess: the preprocessing parameters (default ``PreprocessConfig()``).
        cache: an optional :class:`medimp.data.PreprocessCache`; the exam is then computed once
            and read back from disk afterwards.

    Returns:
        ``(image [C, D, H, W] float32, phase_mask bool [C])`` with C = the selected phases, in
        either ``phase_mode`` (a "single" sample is one channel of this array).
    """
    config = preprocess or PreprocessConfig()
    phases = exam_phases(config, cohort.study.phase_names)
    pid = str(patient_id)
    found = cohort.volumes(pid, exam)
    if not found:
        raise PreprocessError(
            f"patient {pid} exam {exam}: no image in manifest.csv of {cohort.root}",
            fix="pick (patient, exam) pairs from cohort.exam_keys()",
        )
    where = f"patient {pid} exam {exam}"

    def compute() -> tuple[np.ndarray, np.ndarray]:
        vols: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        for p in phases:
            v = cohort.read_volume(pid, exam, p) if p in found else None
            vols[p] = None if v is None else (v.array, v.affine)
        return preprocess_exam(vols, phases, config, where=where)

    if cache is None:
        return compute()
    sources = [(p, found.get(p), *cohort.source_extra(pid, exam, p)) for p in phases]
    return cache.get_or_compute(sources, config.canonical_json(), compute, where=where)
