"""Image geometry that is legal but makes training silently useless: found before training.

* A volume far smaller than the other phases of its exam (a 2x2x2 stub among 48³ volumes).
* A field of view far smaller than the preprocessing window (shape x spacing): after
  resampling, the content fills a tiny share of the window. E.g. a 51x51x72 mm field of view in
  the default 32³ x 6 mm (192 mm) window is 3% of it, the kidney a handful of voxels, and the
  encoder learns nothing.

Both are warnings (``medimp validate``, and ``pretrain`` before its first step). Geometries are
the dicts of :mod:`medimp.data.io.geometry` (``shape``, ``spacing_ras``, ``fov_mm``, RAS order, the
order of the preprocessing ``spacing`` and ``shape``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from medimp.data._errors import Problem
from medimp.data.io.geometry import field_of_view, world_spacing

__all__ = ["PHASE_RATIO", "WINDOW_FILL", "geometry_problems", "header_geometry"]

#: a phase whose field of view (mm³) is below this share of its exam's largest is a stub
PHASE_RATIO = 1 / 8
#: content filling less than this share of the preprocessing window is a warning
WINDOW_FILL = 0.10


def _fmt(v: Iterable[float], digits: str = ".0f") -> str:
    return "x".join(f"{x:{digits}}" for x in v)


def geometry_problems(
    exams: Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]],
    window_shape: tuple[int, int, int] | None = None,
    window_spacing: tuple[float, float, float] | None = None,
    files: Mapping[tuple[str, str, str], str] | None = None,
) -> list[Problem]:
    """Warnings about the volumes of each exam: ``(patient, exam) -> phase -> geometry``.

    Args:
        exams: the geometry (``shape``, ``spacing_ras``, ``fov_mm``) of every volume.
        window_shape: the preprocessing output shape (None: no window check).
        window_spacing: the preprocessing spacing (None: each file keeps its own).
        files: ``(patient, exam, phase) -> file`` to name in the warnings.

    Returns:
        One warning per stub volume, and one for the whole cohort when volumes fill less than
        ``WINDOW_FILL`` of the window (naming the worst one and a spacing that would fit).
    """
    files = files or {}
    out: list[Problem] = []
    small: list[tuple[float, tuple[str, str, str], np.ndarray, np.ndarray]] = []
    total = 0
    for (pid, exam), phases in exams.items():
        fovs = {ph: np.asarray(g["fov_mm"], dtype=float) for ph, g in phases.items()}
        largest = max(fovs, key=lambda ph: float(np.prod(fovs[ph])), default=None)
        for ph, g in phases.items():
            total += 1
            fov = fovs[ph]
            if largest is not None and ph != largest and \
                    np.prod(fov) < PHASE_RATIO * np.prod(fovs[largest]):
                out.append(Problem(
                    "warning", files.get((pid, exam, ph)), pid, exam, ph,
                    f"volume of {_fmt(g['shape'], 'd')} voxels ({_fmt(fov)} mm) is far smaller "
                    f"than phase {largest!r} of the same exam "
                    f"({_fmt(phases[largest]['shape'], 'd')} voxels, {_fmt(fovs[largest])} mm)",
                    "check the export (a localiser, a cropped or a wrong series?); it is "
                    "resampled into the same window as the other phases"))
            if window_shape is None:
                continue
            sp = window_spacing if window_spacing is not None else g["spacing_ras"]
            win = np.asarray(window_shape, dtype=float) * np.asarray(sp, dtype=float)
            fill = float(np.prod(np.minimum(fov, win) / win))
            if fill < WINDOW_FILL:
                small.append((fill, (pid, exam, ph), fov, win))
    if small and window_shape is not None:
        small.sort(key=lambda s: s[0])
        fill, (pid, exam, ph), fov, win = small[0]
        spacing = win / np.asarray(window_shape, dtype=float)
        suggest = np.maximum(fov / np.asarray(window_shape, dtype=float), 0.1)
        out.append(Problem(
            "warning", files.get((pid, exam, ph)), pid, exam, ph,
            f"{len(small)} of {total} volume(s) fill less than {WINDOW_FILL:.0%} of the "
            f"preprocessing window; the smallest, a {_fmt(fov)} mm field of view, fills "
            f"{fill:.0%} of the {_fmt(win)} mm window (shape {_fmt(window_shape, 'd')} at "
            f"{_fmt(spacing, '.3g')} mm): the organ becomes a few voxels and pretraining "
            "learns little",
            f"set preprocess.spacing to about [{', '.join(f'{s:.2g}' for s in suggest)}] "
            "(field of view / shape; `medimp validate --suggest-preprocess` proposes one)"))
    return out


def header_geometry(path: str | Path) -> dict[str, Any] | None:
    """``shape``, ``spacing_ras``, ``fov_mm`` of a NIfTI file or a DICOM series folder from
    its header(s) only, no voxels read; None when the header cannot tell (the image checks
    report why)."""
    import zlib

    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError

    path = Path(path)
    try:
        if path.is_dir():
            from medimp.data.io.dicom_header import header_geometry as dicom_geometry

            return dicom_geometry(path)
        import nibabel as nib

        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape[:3])
        if len(shape) < 3:
            return None
        return _geometry(np.asarray(img.affine, dtype=float), shape)
    except (ValueError, OSError, EOFError, zlib.error, ImageFileError, HeaderDataError):
        return None  # a damaged file (MedimpDataError is a ValueError): the image checks name it


def _geometry(affine: np.ndarray, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"shape": list(shape), "spacing_ras": list(world_spacing(affine)),
            "fov_mm": list(field_of_view(affine, shape))}
