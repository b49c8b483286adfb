"""Dynamic DICOM series: classic (one file per slice, many time points) and enhanced multi-frame.

Every slice of the series -- a classic file, or one frame of an enhanced multi-frame file with
its per-frame functional groups -- becomes a :class:`_Slice` (position, orientation, size,
temporal order and time). The slices are grouped by position along the slice normal; each
position must hold the same number of time points, sorted by the temporal key
(``TemporalPositionIdentifier`` / ``TemporalPositionIndex``, else ``TriggerTime`` /
``NominalCardiacTriggerDelayTime``, else ``AcquisitionTime`` / ``FrameAcquisitionDateTime``).
Time points of different geometry (another orientation, size, pixel spacing, slice positions or
slice count) are :class:`DynamicSeriesError` naming the file, never resampled silently.

Voxels and affine follow :class:`medimp.data.readers.DicomSeriesReader` (SimpleITK's
convention): ``array[i, j, k]`` = column ``i``, row ``j``, slice ``k``; LPS converted to RAS+.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimp.data._errors import CorruptFileError, DicomSeriesError, DynamicSeriesError

__all__ = ["read_dynamic_dicom"]

_ORDER_KEYS = ("TemporalPosition", "TriggerTime", "AcquisitionTime")
_TIME_KEYS = ("TimeOffset", "TriggerTime", "AcquisitionTime")
_RESPLIT = ("export the dynamic series again, complete and in one geometry; or export each "
            "phase as its own series and list one manifest.csv row per phase")


@dataclass
class _Slice:
    file: Path
    frame: int | None
    position: np.ndarray
    orientation: np.ndarray
    size: tuple[int, int]
    pixel_spacing: np.ndarray
    slope: float = 1.0
    intercept: float = 0.0
    order: dict[str, float] = field(default_factory=dict)
    time: dict[str, float] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.file.name + ("" if self.frame is None else f" frame {self.frame + 1}")


def _seq_item(ds: Any, name: str) -> Any:
    seq = getattr(ds, name, None)
    return seq[0] if seq else None


def _clock(value: Any) -> float | None:
    from medimp.data.readers import _clock_seconds

    if value in (None, ""):
        return None
    try:
        return _clock_seconds(value)
    except (ValueError, IndexError):
        return None


def _num(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _classic_slice(f: Path, ds: Any) -> _Slice:
    for attr in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"):
        if getattr(ds, attr, None) is None:
            raise DicomSeriesError(f"slice lacks {attr}", file=f,
                                   fix="export the series with full geometry headers")
    s = _Slice(file=f, frame=None,
               position=np.asarray(ds.ImagePositionPatient, dtype=float),
               orientation=np.asarray(ds.ImageOrientationPatient, dtype=float),
               size=(int(ds.Rows), int(ds.Columns)),
               pixel_spacing=np.asarray(getattr(ds, "PixelSpacing", [1.0, 1.0]), dtype=float),
               slope=_num(getattr(ds, "RescaleSlope", None)) or 1.0,
               intercept=_num(getattr(ds, "RescaleIntercept", None)) or 0.0)
    tpi = _num(getattr(ds, "TemporalPositionIdentifier", None))
    trig = _num(getattr(ds, "TriggerTime", None))
    acq = _clock(getattr(ds, "AcquisitionTime", None))
    for key, value in (("TemporalPosition", tpi), ("TriggerTime", trig),
                       ("AcquisitionTime", acq)):
        if value is not None:
            s.order[key] = value
    if trig is not None:
        s.time["TriggerTime"] = trig / 1000.0
    if acq is not None:
        s.time["AcquisitionTime"] = acq
    return s


def _enhanced_slices(f: Path, ds: Any) -> list[_Slice]:
    n = int(getattr(ds, "NumberOfFrames", 1) or 1)
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
    if per is None or len(per) != n:
        raise DicomSeriesError(
            f"multi-frame file of {n} frames without one per-frame functional group per frame",
            file=f, fix="export an enhanced MR file with its functional groups or classic "
                        "one-file-per-slice DICOM, or convert it to NIfTI (e.g. `dcm2niix -z y`)")

    def get(group: Any, seq: str, attr: str) -> Any:
        for g in (group, shared):
            item = _seq_item(g, seq) if g is not None else None
            if item is not None and getattr(item, attr, None) is not None:
                return getattr(item, attr)
        return None

    out = []
    for i, g in enumerate(per):
        pos = get(g, "PlanePositionSequence", "ImagePositionPatient")
        iop = get(g, "PlaneOrientationSequence", "ImageOrientationPatient")
        if pos is None or iop is None:
            raise DicomSeriesError(
                f"frame {i + 1} lacks its plane position or orientation", file=f,
                fix="export the enhanced file with PlanePosition/PlaneOrientation groups")
        s = _Slice(file=f, frame=i, position=np.asarray(pos, dtype=float),
                   orientation=np.asarray(iop, dtype=float),
                   size=(int(ds.Rows), int(ds.Columns)),
                   pixel_spacing=np.asarray(get(g, "PixelMeasuresSequence", "PixelSpacing")
                                            or [1.0, 1.0], dtype=float),
                   slope=_num(get(g, "PixelValueTransformationSequence", "RescaleSlope")) or 1.0,
                   intercept=_num(get(g, "PixelValueTransformationSequence",
                                      "RescaleIntercept")) or 0.0)
        tpi = _num(get(g, "FrameContentSequence", "TemporalPositionIndex"))
        offset = _num(get(g, "TemporalPositionSequence", "TemporalPositionTimeOffset"))
        trig = _num(get(g, "CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"))
        acq = _clock(get(g, "FrameContentSequence", "FrameAcquisitionDateTime"))
        for key, value in (("TemporalPosition", tpi), ("TriggerTime", trig),
                           ("AcquisitionTime", acq)):
            if value is not None:
                s.order[key] = value
        for key, value in (("TimeOffset", offset),
                           ("TriggerTime", None if trig is None else trig / 1000.0),
                           ("AcquisitionTime", acq)):
            if value is not None:
                s.time[key] = value
        out.append(s)
    return out


def _check_same_geometry(folder: Path, slices: list[_Slice]) -> None:
    s0 = slices[0]
    for s in slices[1:]:
        what = None
        if s.size != s0.size:
            what = f"is {s.size[0]}x{s.size[1]} but {s0.where} is {s0.size[0]}x{s0.size[1]}"
        elif not np.allclose(s.orientation, s0.orientation, atol=1e-4):
            what = (f"has orientation {s.orientation.tolist()} but {s0.where} has "
                    f"{s0.orientation.tolist()}")
        elif not np.allclose(s.pixel_spacing, s0.pixel_spacing, rtol=0.01):
            what = (f"has pixel spacing {s.pixel_spacing.tolist()} but {s0.where} has "
                    f"{s0.pixel_spacing.tolist()}")
        if what:
            raise DynamicSeriesError(
                f"time points of different geometry: {s.where} {what}", file=folder,
                fix=_RESPLIT)


def _group_by_position(folder: Path, slices: list[_Slice], normal: np.ndarray,
                       order_key: str | None) -> tuple[np.ndarray, list[list[_Slice]]]:
    """Slice positions (ascending, mm along the normal) and, per position, its slices
    sorted by time."""
    groups: dict[float, list[_Slice]] = defaultdict(list)
    for s in slices:
        groups[round(float(np.dot(s.position, normal)), 2)].append(s)
    pos = np.array(sorted(groups))
    columns = [groups[p] for p in pos]
    counts = [len(c) for c in columns]
    n_t = max(set(counts), key=counts.count)
    for p, c in zip(pos, columns, strict=True):
        if len(c) != n_t:
            raise DynamicSeriesError(
                f"time points of different geometry: slice position {p:g} mm holds {len(c)} "
                f"time point(s) (e.g. {c[0].where}) where the others hold {n_t}", file=folder,
                fix="a time point has other slice positions or missing files: " + _RESPLIT)
        for s in c[1:]:
            if not np.allclose(s.position, c[0].position, atol=1e-2):
                raise DynamicSeriesError(
                    f"time points of different geometry: {s.where} starts at "
                    f"{s.position.tolist()} mm, {c[0].where} at {c[0].position.tolist()} mm",
                    file=folder, fix=_RESPLIT)
    if n_t > 1 and order_key is None:
        raise DynamicSeriesError(
            f"{n_t} slices at each position but no TemporalPositionIdentifier, TriggerTime or "
            "AcquisitionTime (or their enhanced per-frame equivalents) to order them in time",
            file=folder, fix="export the series with its timing tags")
    if order_key is not None:
        for c in columns:
            c.sort(key=lambda s: s.order[order_key])
            keys = [s.order[order_key] for s in c]
            dup = [i for i in range(1, len(keys)) if keys[i] == keys[i - 1]]
            if dup:
                raise DynamicSeriesError(
                    f"{c[dup[0]].where} and {c[dup[0] - 1].where} share slice position and "
                    f"{order_key} {keys[dup[0]]:g}", file=folder,
                    fix="remove the repeated files (a repeated acquisition belongs in its own "
                        "folder)")
        if order_key == "TemporalPosition":
            ref = [s.order[order_key] for s in columns[0]]
            for c in columns[1:]:
                got = [s.order[order_key] for s in c]
                if got != ref:
                    raise DynamicSeriesError(
                        f"slice position of {c[0].where} has temporal positions {got}, the "
                        f"first position {ref}", file=folder, fix=_RESPLIT)
    exact = np.array([float(np.dot(c[0].position, normal)) for c in columns])
    return exact, columns


def _check_steps(folder: Path, pos: np.ndarray, columns: list[list[_Slice]],
                 tol: float) -> float:
    if pos.size < 2:
        raise DynamicSeriesError("the dynamic series has a single slice position; 3D volumes "
                                 "are expected", file=folder, fix="export the whole series")
    diffs = np.diff(pos)
    step = float(np.median(diffs))
    bad = np.flatnonzero(np.abs(diffs - step) > tol * step)
    if bad.size:
        i = int(bad[0])
        raise DicomSeriesError(
            f"missing slice(s) or non-uniform spacing: {diffs[i]:.3f} mm between "
            f"{columns[i][0].where} and {columns[i + 1][0].where}, median step {step:.3f} mm",
            file=folder, fix="export the complete series again")
    return step


def read_dynamic_dicom(folder: Path, files: list[Path], spacing_tol: float = 0.01
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """Read a dynamic DICOM series (classic or enhanced) from ``files`` of one series.

    Returns:
        ``(array (I, J, K, T) float32, RAS affine, times in s or None, time source)``; the
        times are absolute (any origin); the caller checks and rebases them.

    Raises:
        DicomSeriesError, DynamicSeriesError: headers or geometry that do not make one
            dynamic series; CorruptFileError: pixels unreadable.
    """
    import pydicom

    datasets: dict[Path, Any] = {}
    slices: list[_Slice] = []
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except Exception as exc:
            raise CorruptFileError(f"DICOM file unreadable ({exc})", file=f,
                                   fix="export the series again") from exc
        datasets[f] = ds
        multi = int(getattr(ds, "NumberOfFrames", 1) or 1) > 1
        if multi or "PerFrameFunctionalGroupsSequence" in ds:
            slices.extend(_enhanced_slices(f, ds))
        else:
            slices.append(_classic_slice(f, ds))
    _check_same_geometry(folder, slices)
    order_key = next((k for k in _ORDER_KEYS if all(k in s.order for s in slices)), None)
    time_key = next((k for k in _TIME_KEYS if all(k in s.time for s in slices)), None)
    iop = slices[0].orientation
    normal = np.cross(iop[:3], iop[3:])
    pos, columns = _group_by_position(folder, slices, normal, order_key)
    step = _check_steps(folder, pos, columns, spacing_tol)
    n_t = len(columns[0])
    rows, cols = slices[0].size
    array = np.empty((cols, rows, len(pos), n_t), dtype=np.float32)
    pixels: dict[Path, np.ndarray] = {}
    for k, column in enumerate(columns):
        for t, s in enumerate(column):
            if s.file not in pixels:
                try:
                    pixels[s.file] = np.asarray(datasets[s.file].pixel_array)
                except Exception as exc:
                    raise CorruptFileError(f"pixel data unreadable ({exc})", file=s.file,
                                           fix="export the series again") from exc
            pix = pixels[s.file] if s.frame is None else pixels[s.file][s.frame]
            if pix.ndim != 2:
                raise DicomSeriesError("multi-component (e.g. RGB) DICOM pixels", file=s.file,
                                       fix="export a greyscale series")
            array[:, :, k, t] = pix.T.astype(np.float32) * s.slope + s.intercept
    ps = slices[0].pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * ps[1]
    lps[:3, 1] = iop[3:] * ps[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = columns[0][0].position
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    times = None
    source = "none (no TemporalPositionTimeOffset, TriggerTime or AcquisitionTime)"
    if time_key is not None:
        times = np.array([min(c[t].time[time_key] for c in columns) for t in range(n_t)])
        source = {"TimeOffset": "TemporalPositionTimeOffset", "TriggerTime": "TriggerTime",
                  "AcquisitionTime": "AcquisitionTime"}[time_key] + " of the DICOM headers"
    return array, ras, times, source
