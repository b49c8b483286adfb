"""Fields of view, preprocessing-window coverage and a preprocessing suggestion for a cohort.

Pure numpy (no torch): ``medimp validate`` uses it to print what each exam's field of view is,
how much of it the preprocessing window (``spacing x shape``) keeps, and, with
``--suggest-preprocess``, a spacing and shape that fit the cohort.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["field_of_view", "suggest_preprocess", "window_coverage"]


def field_of_view(affine: np.ndarray, shape: Sequence[int]) -> tuple[float, float, float]:
    """Extent in mm along the world axes R-L, A-P, S-I (RAS order, the order of the
    preprocessing ``spacing`` and ``shape`` after reorientation to RAS)."""
    lin = np.abs(np.asarray(affine, dtype=float)[:3, :3])
    ext = lin @ np.asarray(shape[:3], dtype=float)
    return (float(ext[0]), float(ext[1]), float(ext[2]))


def world_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along the world axes (RAS order) after reorientation: the column norm of
    the voxel axis that is closest to each world axis."""
    lin = np.asarray(affine, dtype=float)[:3, :3]
    norms = np.sqrt((lin**2).sum(axis=0))
    out = [0.0, 0.0, 0.0]
    for i in range(3):
        out[int(np.argmax(np.abs(lin[:, i])))] = float(norms[i])
    return (out[0], out[1], out[2])


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
