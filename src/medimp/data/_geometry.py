"""Image geometry that is legal but makes training silently useless, found before training.

* A volume far smaller than the other phases of its exam (a 2x2x2 stub among 48³ volumes).
* A field of view far smaller than the preprocessing window (shape x spacing): after
  resampling, the content fills a tiny share of the window, e.g. a 51x51x72 mm field of view at
  the default 6 mm x 32³ (192 mm) window is 3% of it, the kidney a handful of voxels, and the
  encoder learns nothing.

Both are warnings (``medimp validate``, and ``pretrain`` before its first step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from medimp.data._errors import Problem

__all__ = ["Geometry", "geometry_problems", "header_geometry"]

#: (shape, spacing in mm) of one volume
Geometry = tuple[tuple[int, int, int], tuple[float, float, float]]

#: a phase whose field of view is below this share of its exam's largest is a stub
PHASE_RATIO = 1 / 8
#: content filling less than this share of the preprocessing window is a warning
WINDOW_FILL = 0.10


def _fov(g: Geometry) -> np.ndarray:
    return np.asarray(g[0], dtype=float) * np.asarray(g[1], dtype=float)


def _fmt(v: Iterable[float]) -> str:
    return "x".join(f"{x:.0f}" for x in v)


def geometry_problems(
    exams: Mapping[tuple[str, str], Mapping[str, Geometry]],
    window_shape: tuple[int, int, int] | None = None,
    window_spacing: tuple[float, float, float] | None = None,
    files: Mapping[tuple[str, str, str], str] | None = None,
) -> list[Problem]:
    """Warnings about the volumes of each exam ``(patient, exam) -> phase -> geometry``.

    Args:
        exams: the geometry of every volume, by exam and phase.
        window_shape: the preprocessing output shape (None: no window check).
        window_spacing: the preprocessing spacing (None: each file keeps its own).
        files: ``(patient, exam, phase) -> file`` to name in the warnings.
    """
    files = files or {}
    out: list[Problem] = []
    small: list[tuple[float, tuple[str, str, str], Geometry, np.ndarray]] = []
    total = 0
    for (pid, exam), phases in exams.items():
        fovs = {ph: _fov(g) for ph, g in phases.items()}
        largest = max(fovs, key=lambda ph: float(np.prod(fovs[ph])), default=None)
        for ph, g in phases.items():
            total += 1
            if largest is not None and ph != largest and \
                    np.prod(fovs[ph]) < PHASE_RATIO * np.prod(fovs[largest]):
                ref = phases[largest]
                out.append(Problem(
                    "warning", files.get((pid, exam, ph)), pid, exam, ph,
                    f"volume of {_fmt(g[0])} voxels ({_fmt(fovs[ph])} mm) is far smaller than "
                    f"phase {largest!r} of the same exam ({_fmt(ref[0])} voxels, "
                    f"{_fmt(fovs[largest])} mm)",
                    "check the export (a localiser or a cropped series?); it is resampled into "
                    "the same window as the other phases"))
            if window_shape is None:
                continue
            sp = np.asarray(window_spacing if window_spacing is not None else g[1], dtype=float)
            win = np.asarray(window_shape, dtype=float) * sp
            fill = float(np.prod(np.minimum(fovs[ph], win) / win))
            if fill < WINDOW_FILL:
                small.append((fill, (pid, exam, ph), g, win))
    if small:
        small.sort(key=lambda s: s[0])
        fill, (pid, exam, ph), g, win = small[0]
        fov = _fov(g)
        suggest = [max(f / n, 0.1) for f, n in zip(fov, window_shape or (1, 1, 1), strict=True)]
        out.append(Problem(
            "warning", files.get((pid, exam, ph)), pid, exam, ph,
            f"{len(small)} of {total} volume(s) fill less than {WINDOW_FILL:.0%} of the "
            f"preprocessing window (smallest: field of view {_fmt(fov)} mm = {fill:.0%} of the "
            f"{_fmt(win)} mm window, shape {_fmt(window_shape or ())} at "
            f"{_fmt_sp(win, window_shape)} mm): the organ becomes a few voxels and "
            "pretraining learns little",
            "set preprocess.spacing to about "
            f"[{', '.join(f'{s:.2g}' for s in suggest)}] (field of view / shape), or a smaller "
            "preprocess.shape"))
    return out


def _fmt_sp(win: np.ndarray, shape: tuple[int, int, int] | None) -> str:
    if not shape:
        return "?"
    return "x".join(f"{w / n:.3g}" for w, n in zip(win, shape, strict=True))


def header_geometry(path: str | Path) -> Geometry | None:
    """Shape and spacing of a NIfTI file or a DICOM series folder from its header(s) only
    (no voxel data read); None when the header cannot tell (the reader reports why)."""
    path = Path(path)
    try:
        if path.is_dir():
            return _dicom_geometry(path)
        import nibabel as nib

        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape[:3])
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        if len(shape) < 3 or len(zooms) < 3:
            return None
        return shape, zooms  # type: ignore[return-value]
    except Exception:  # a damaged file: the image checks name it
        return None


def _dicom_geometry(folder: Path) -> Geometry | None:
    from medimp.data.readers import _read_dicom_headers

    headers = [h for _, h in _read_dicom_headers(folder)]
    if not headers:
        return None
    first = headers[0]
    rows, cols = int(first.Rows), int(first.Columns)
    ps = [float(x) for x in first.PixelSpacing]
    positions = sorted(float(np.dot(np.asarray(h.ImagePositionPatient, dtype=float),
                                    _normal(first))) for h in headers
                       if getattr(h, "ImagePositionPatient", None) is not None)
    if len(positions) > 1:
        dz = (positions[-1] - positions[0]) / (len(positions) - 1)
    else:
        dz = float(getattr(first, "SliceThickness", 1.0) or 1.0)
    if not math.isfinite(dz) or dz <= 0:
        dz = 1.0
    return (cols, rows, len(headers)), (ps[1], ps[0], abs(dz))


def _normal(ds: object) -> np.ndarray:
    iop = np.asarray(getattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    return np.cross(iop[:3], iop[3:])
