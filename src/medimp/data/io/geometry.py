"""Image geometry in one place: voxel sizes, orientation, fields of view, a preprocessing
suggestion.

Orientation and voxel sizes come from nibabel (``nibabel.orientations.io_orientation`` and
``nibabel.affines.voxel_sizes``), the functions MONAI's ``Orientation`` transform uses when
preprocessing reorients a volume to RAS (docs/data-pipeline.md). So the spacing and field of
view printed by ``medimp validate``, read by the geometry checks and proposed by
``--suggest-preprocess`` are those of the volume preprocessing actually resamples, also for
oblique acquisitions. The readers take their ``Volume.spacing`` from here as well.

Pure numpy + nibabel (no torch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "field_of_view",
    "ras_axes",
    "ras_shape",
    "suggest_preprocess",
    "voxel_sizes",
    "window_coverage",
    "world_spacing",
]


def voxel_sizes(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the file's voxel axes I, J, K (``nibabel.affines.voxel_sizes``:
    the norms of the affine's columns)."""
    from nibabel.affines import voxel_sizes as _voxel_sizes

    s = _voxel_sizes(np.asarray(affine, dtype=np.float64))
    return (float(s[0]), float(s[1]), float(s[2]))


def ras_axes(affine: np.ndarray) -> np.ndarray:
    """For each voxel axis, the RAS world axis it becomes after reorientation and its flip:
    ``nibabel.orientations.io_orientation`` (rows ``[world axis, +1/-1]``), the choice MONAI's
    ``Orientation`` makes. An oblique axis goes to its nearest world axis, and no two voxel
    axes ever go to the same one."""
    from nibabel.orientations import io_orientation

    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    if np.isnan(ornt).any():
        raise ValueError(f"the affine has a zero-length voxel axis: {np.asarray(affine).tolist()}")
    return ornt.astype(int)


def _to_ras(values: Sequence[float], affine: np.ndarray) -> tuple[float, float, float]:
    out = [0.0, 0.0, 0.0]
    for (axis, _flip), v in zip(ras_axes(affine), values, strict=True):
        out[int(axis)] = float(v)
    return (out[0], out[1], out[2])


def world_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the world axes R-L, A-P, S-I after reorientation to RAS (the
    order of the preprocessing ``spacing``): :func:`voxel_sizes` permuted by :func:`ras_axes`."""
    return _to_ras(voxel_sizes(affine), affine)


def ras_shape(affine: np.ndarray, shape: Sequence[int]) -> tuple[int, int, int]:
    """The volume's shape after reorientation to RAS (voxel counts permuted by
    :func:`ras_axes`)."""
    out = _to_ras([float(n) for n in shape[:3]], affine)
    return (int(out[0]), int(out[1]), int(out[2]))


def field_of_view(affine: np.ndarray, shape: Sequence[int]) -> tuple[float, float, float]:
    """Extent in mm along the world axes R-L, A-P, S-I (RAS order, the order of the
    preprocessing ``spacing`` and ``shape``): voxels x voxel size of each voxel axis, placed
    on the world axis that reorientation gives it (:func:`ras_axes`). For an oblique volume
    this is the extent of the grid that preprocessing resamples (MONAI keeps the rotation),
    not the larger box around it in world coordinates."""
    ext = [float(n) * s for n, s in zip(shape[:3], voxel_sizes(affine), strict=True)]
    return _to_ras(ext, affine)


def window_coverage(fov_mm: Sequence[float], spacing: Sequence[float] | None,
                    shape: Sequence[int],
                    native_spacing: Sequence[float] | None = None) -> tuple[float, float, float]:
    """Fraction of the field of view, per axis, that the preprocessing window keeps (1.0 =
    all of it; a window larger than the FOV is padded). ``spacing=None`` keeps the file's
    spacing (then ``native_spacing`` is needed)."""
    sp = spacing if spacing is not None else native_spacing
    if sp is None:
        raise ValueError("window_coverage: give spacing or native_spacing")
    return tuple(min(1.0, s * n / f) if f > 0 else 1.0  # type: ignore[return-value]
                 for s, n, f in zip(sp, shape, fov_mm, strict=True))


def _round_spacing(x: float) -> float:
    return float(math.ceil(x * 4.0 - 1e-9) / 4.0)  # up to a quarter millimetre


def suggest_preprocess(geometries: Iterable[dict[str, Any]], max_side: int = 32,
                       multiple: int = 16, quantile: float = 0.9) -> dict[str, Any]:
    """A spacing and shape that keep the cohort's field of view within ``max_side`` voxels.

    Args:
        geometries: per exam, ``{"fov_mm": [x, y, z], "spacing_ras": [x, y, z]}`` (as
            ``validate_cohort`` stores them in ``summary["geometry"]``).
        max_side: largest window side in voxels (32 on a CPU; 96-128 on a GPU).
        multiple: shapes are rounded up to a multiple of this (encoders halve 4 times).
        quantile: the window covers this quantile of the exams' FOV (0.9: 90% fit whole).

    Returns:
        ``{"spacing": [...], "shape": [...], "covered": fraction of exams fully inside the
        window, "native_spacing": median voxel size}``.
    """
    geos = list(geometries)
    if not geos:
        raise ValueError("suggest_preprocess: no exam geometry (run validate with images)")
    fov = np.array([g["fov_mm"] for g in geos], dtype=float)
    native = np.array([g["spacing_ras"] for g in geos], dtype=float)
    want = np.quantile(fov, quantile, axis=0)
    med = np.median(native, axis=0)
    spacing, shape = [], []
    for f, s in zip(want, med, strict=True):
        sp = _round_spacing(max(float(s), float(f) / max_side))
        n = math.ceil(f / sp - 1e-6)
        n = min(max_side, max(multiple, math.ceil(n / multiple) * multiple))
        # rounding the shape up (to ``multiple``) must not pad the window with empty space:
        # a 16-voxel, 200 mm exam would otherwise get a 32-voxel window twice its field of view
        sp = _round_spacing(float(f) / n) if n * sp > f else sp
        spacing.append(sp)
        shape.append(int(n))
    window = np.array(spacing) * np.array(shape)
    covered = float(np.mean((fov <= window[None, :] + 1e-6).all(axis=1)))
    return {"spacing": spacing, "shape": shape, "covered": covered,
            "native_spacing": [round(float(s), 3) for s in med], "max_side": max_side}
