"""DICOM headers in one place: slice geometry, rescale and times, for classic and enhanced files.

The reader (:mod:`medimp.data.io.readers`, :mod:`medimp.data.io.dicom_dynamic`) and the geometry
checks (``medimp validate``, pretrain's preflight) read a series' geometry through this module,
so they agree on every file:

* :func:`slices_of` turns one dataset into its :class:`DicomSlice` objects: a classic file is one
  slice; an enhanced multi-frame file is one slice per frame, read from its per-frame functional
  groups (``PlanePositionSequence``, ``PlaneOrientationSequence``, ``PixelMeasuresSequence``,
  ``PixelValueTransformationSequence``, ``FrameContentSequence``...), falling back on the shared
  groups. A ``RescaleSlope`` of 0 (every voxel would be the intercept) is refused here.
* :func:`series_affine` gives the RAS+ affine and shape of a series from its slices (LPS
  converted, nibabel's convention), :func:`header_geometry` the same from a folder's headers.
* :func:`rescale` applies the modality LUT or rescale through pydicom
  (``pydicom.pixels.apply_rescale``).
* :func:`clock_seconds` reads DICOM ``TM``/``DT``/``DA`` values through ``pydicom.valuerep``
  (a time-zone offset of a ``DT`` is honoured) and ISO strings of dcm2niix sidecars;
  :func:`unwrap_midnight` puts the times of a series that crosses midnight, known only as times
  of day, after one another.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medimp.data._errors import CorruptFileError, DicomSeriesError, VolumeReadError
from medimp.data.io.geometry import field_of_view, world_spacing

__all__ = [
    "HEADER_TAGS",
    "DicomSlice",
    "clock_seconds",
    "header_geometry",
    "is_multiframe",
    "rescale",
    "series_affine",
    "slices_of",
    "unwrap_midnight",
    "unwrap_slice_times",
]

#: the header fields geometry, rescale and timing need (parsing only these is much faster)
HEADER_TAGS = [
    "SeriesInstanceUID", "SeriesDescription", "ImagePositionPatient", "ImageOrientationPatient",
    "Rows", "Columns", "PixelSpacing", "NumberOfFrames", "TemporalPositionIdentifier",
    "NumberOfTemporalPositions", "TriggerTime", "AcquisitionTime", "AcquisitionDate",
    "AcquisitionDateTime", "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence",
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "PixelRepresentation",  # decides the signedness of a Modality LUT's descriptor (implicit VR)
]

_DAY = 86400.0


@dataclass
class DicomSlice:
    """One 2D slice of a series: a classic file, or one frame of an enhanced multi-frame file.

    ``order`` holds the keys that sort time points (``TemporalPosition``, ``TriggerTime``,
    ``AcquisitionTime``), ``time`` the frame times in seconds (``TimeOffset``, ``TriggerTime``,
    ``AcquisitionTime``), each only where the header gives it.
    """

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


def _num(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _seconds_of(moment: _dt.datetime) -> float:
    """Seconds since 1970 (a naive date-time is read as UTC: only differences matter)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.UTC)
    return moment.timestamp()


def clock_seconds(value: Any, date: Any = None) -> float:
    """Seconds of a DICOM time.

    * ``DT`` (``YYYYMMDDHHMMSS.ffffff[+HHMM]``) or an ISO date-time (``2024-01-01T23:59:50``):
      seconds since 1970, time-zone offset honoured.
    * ``TM`` (``HHMMSS.ffffff``) or an ISO time (``23:59:50.5``) with a ``DA`` ``date``: the
      same; without a date, seconds since midnight (see :func:`unwrap_midnight`).
    * a number: itself.

    Raises:
        ValueError: not a time.
    """
    from pydicom.valuerep import DA, DT, TM

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if "T" in text or "-" in text[:8]:  # an ISO date-time (a sidecar)
        return _seconds_of(_dt.datetime.fromisoformat(text))
    if ":" not in text and len(text.split(".")[0].split("+")[0].split("-")[0]) > 6:
        return _seconds_of(DT(text))  # DT: date then time
    t = _dt.time.fromisoformat(text) if ":" in text else TM(text)
    if t is None:
        raise ValueError(f"{value!r} is not a time")
    if date not in (None, ""):
        day = DA(str(date).strip())
        if day is not None:
            return _seconds_of(_dt.datetime.combine(day, t))
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


def unwrap_midnight(seconds: np.ndarray) -> np.ndarray:
    """Times of one series that crosses midnight, made continuous.

    A dynamic series lasts minutes: when its times of day span more than 12 hours, the early
    ones (before noon) are the next day's. Times with a date (seconds since 1970) that span
    more than 12 hours are read the same way from their times of day: some scanners stamp
    every image with the series' ``AcquisitionDate``, which then does not turn at midnight
    while the ``AcquisitionTime`` does. Times within 12 hours are returned as given.
    """
    t = np.asarray(seconds, dtype=np.float64)
    if not t.size or float(t.max() - t.min()) <= _DAY / 2:
        return t
    day0 = np.floor(float(t.min()) / _DAY) * _DAY
    tod = t - np.floor(t / _DAY) * _DAY  # time of day
    if float(tod.max() - tod.min()) > _DAY / 2:
        tod = np.where(tod < _DAY / 2, tod + _DAY, tod)
    return day0 + tod


def _clock(value: Any, date: Any = None) -> float | None:
    if value in (None, ""):
        return None
    try:
        return clock_seconds(value, date)
    except (ValueError, TypeError, OverflowError):
        return None


def _check_slope(slope: float | None, where: str, file: Path) -> float:
    if slope is None:
        return 1.0
    if slope == 0.0:
        raise DicomSeriesError(
            f"RescaleSlope is 0 in {where}: every voxel would be the RescaleIntercept (the "
            "stored values are lost); the header is invalid", file=file,
            fix="correct RescaleSlope (usually 1) in the export, or export the series again")
    return slope


def _vector(value: Any, n: int, attr: str, where: str, file: Path, *,
            positive: bool = False) -> np.ndarray:
    """``value`` as ``n`` finite numbers (``positive``: each above 0), or a DicomSeriesError
    naming the attribute and the file: a short or zero vector would otherwise fail deep in the
    geometry maths with a bare numpy error (or be replaced by 1 mm without a word)."""
    try:
        v = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        v = np.array([])
    if v.size != n or not np.isfinite(v).all() or (positive and not (v > 0).all()):
        raise DicomSeriesError(
            f"{attr} is {list(v) if v.size else repr(value)} in {where}; {n} "
            f"{'positive ' if positive else ''}numbers are expected", file=file,
            fix="export the series again with complete geometry headers, or convert it to "
                "NIfTI (e.g. `dcm2niix -z y`)")
    return v


def _classic_slice(f: Path, ds: Any) -> DicomSlice:
    for attr in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"):
        if getattr(ds, attr, None) is None:
            raise DicomSeriesError(f"slice lacks {attr}", file=f,
                                   fix="export the series with full geometry headers")
    s = DicomSlice(file=f, frame=None,
                   position=_vector(ds.ImagePositionPatient, 3, "ImagePositionPatient", f.name,
                                    f),
                   orientation=_vector(ds.ImageOrientationPatient, 6, "ImageOrientationPatient",
                                       f.name, f),
                   size=(int(ds.Rows), int(ds.Columns)),
                   pixel_spacing=_vector(getattr(ds, "PixelSpacing", [1.0, 1.0]), 2,
                                         "PixelSpacing", f.name, f, positive=True),
                   slope=_check_slope(_num(getattr(ds, "RescaleSlope", None)), f.name, f),
                   intercept=_num(getattr(ds, "RescaleIntercept", None)) or 0.0)
    tpi = _num(getattr(ds, "TemporalPositionIdentifier", None))
    trig = _num(getattr(ds, "TriggerTime", None))
    acq = _clock(getattr(ds, "AcquisitionDateTime", None))
    if acq is None:
        acq = _clock(getattr(ds, "AcquisitionTime", None), getattr(ds, "AcquisitionDate", None))
    for key, value in (("TemporalPosition", tpi), ("TriggerTime", trig),
                       ("AcquisitionTime", acq)):
        if value is not None:
            s.order[key] = value
    if trig is not None:
        s.time["TriggerTime"] = trig / 1000.0
    if acq is not None:
        s.time["AcquisitionTime"] = acq
    return s


def _seq_item(ds: Any, name: str) -> Any:
    seq = getattr(ds, name, None)
    return seq[0] if seq else None


def _enhanced_slices(f: Path, ds: Any) -> list[DicomSlice]:
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

    for attr in ("Rows", "Columns"):
        if getattr(ds, attr, None) is None:
            raise DicomSeriesError(f"multi-frame file lacks {attr}", file=f,
                                   fix="export the series with full geometry headers")
    out = []
    for i, g in enumerate(per):
        pos = get(g, "PlanePositionSequence", "ImagePositionPatient")
        iop = get(g, "PlaneOrientationSequence", "ImageOrientationPatient")
        if pos is None or iop is None:
            raise DicomSeriesError(
                f"frame {i + 1} lacks its plane position or orientation", file=f,
                fix="export the enhanced file with PlanePosition/PlaneOrientation groups")
        slope = _num(get(g, "PixelValueTransformationSequence", "RescaleSlope"))
        where = f"{f.name} frame {i + 1}"
        spacing = get(g, "PixelMeasuresSequence", "PixelSpacing")
        s = DicomSlice(file=f, frame=i,
                       position=_vector(pos, 3, "ImagePositionPatient", where, f),
                       orientation=_vector(iop, 6, "ImageOrientationPatient", where, f),
                       size=(int(ds.Rows), int(ds.Columns)),
                       pixel_spacing=_vector([1.0, 1.0] if spacing is None else spacing, 2,
                                             "PixelSpacing", where, f, positive=True),
                       slope=_check_slope(slope, where, f),
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


def is_multiframe(ds: Any) -> bool:
    """An enhanced (multi-frame) file: several frames or per-frame functional groups."""
    return int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 or \
        "PerFrameFunctionalGroupsSequence" in ds


def slices_of(f: Path, ds: Any) -> list[DicomSlice]:
    """The slices of one file: itself (classic) or one per frame (enhanced multi-frame).

    Raises:
        DicomSeriesError: geometry attributes missing, no per-frame groups for a multi-frame
            file, or a ``RescaleSlope`` of 0.
    """
    return _enhanced_slices(f, ds) if is_multiframe(ds) else [_classic_slice(f, ds)]


def unwrap_slice_times(slices: list[DicomSlice]) -> None:
    """Acquisition times known only as times of day, across midnight, made continuous (in
    place, for the order and the times alike)."""
    for attr in ("order", "time"):
        values = [getattr(s, attr).get("AcquisitionTime") for s in slices]
        if any(v is None for v in values):
            continue
        for s, v in zip(slices, unwrap_midnight(np.asarray(values)), strict=True):
            getattr(s, attr)["AcquisitionTime"] = float(v)


def series_affine(slices: list[DicomSlice], step: float | None = None,
                  origin: np.ndarray | None = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """RAS+ affine and shape ``(columns, rows, slice positions)`` of a series' slices.

    Axes follow SimpleITK's reading of a series: voxel ``i`` along the row direction (the
    first ``ImageOrientationPatient`` vector) at ``PixelSpacing[1]``, ``j`` down the columns at
    ``PixelSpacing[0]``, ``k`` along the slice normal at ``step`` (default: the median distance
    between distinct positions), starting at ``origin`` (default: the lowest position).
    """
    s0 = slices[0]
    iop = s0.orientation
    normal = np.cross(iop[:3], iop[3:])
    along: dict[float, tuple[float, np.ndarray]] = {}
    for s in slices:  # one entry per distinct position (the time points of a dynamic series)
        d = float(np.dot(s.position, normal))
        along.setdefault(round(d, 2), (d, s.position))
    pos = np.array(sorted(d for d, _ in along.values()))
    if step is None:
        step = float(np.median(np.diff(pos))) if pos.size > 1 else 1.0
    if origin is None:
        origin = min(along.values(), key=lambda v: v[0])[1]
    ps = s0.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * ps[1]
    lps[:3, 1] = iop[3:] * ps[0]
    lps[:3, 2] = normal * step
    lps[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, (s0.size[1], s0.size[0], int(pos.size))


def rescale(pixels: np.ndarray, s: DicomSlice, ds: Any = None) -> np.ndarray:
    """Stored values to modality values (e.g. Hounsfield units) through pydicom's
    ``apply_rescale`` (``apply_modality_lut``): the classic file's Modality LUT when it has one,
    else the slice's ``RescaleSlope``/``RescaleIntercept`` (per frame for enhanced files)."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_rescale

    if ds is not None and s.frame is None and ds.get("ModalityLUTSequence"):
        return apply_rescale(pixels, ds)
    if s.slope == 1.0 and s.intercept == 0.0:
        return pixels
    values = Dataset()
    values.RescaleSlope = s.slope
    values.RescaleIntercept = s.intercept
    return apply_rescale(pixels, values)


def header_geometry(folder: Path) -> dict[str, Any] | None:
    """``shape``, ``spacing_ras``, ``fov_mm`` of the DICOM series in ``folder`` from its headers
    (classic or enhanced: every frame counts as a slice); None when it holds no slice."""
    slices = [s for f, ds in read_dicom_headers(folder) for s in slices_of(f, ds)]
    if not slices:
        return None
    affine, shape = series_affine(slices)
    return {"shape": list(shape), "spacing_ras": list(world_spacing(affine)),
            "fov_mm": list(field_of_view(affine, shape))}


def dicom_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder (hidden files left out), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def read_dicom_headers(folder: Path) -> list[tuple[Path, Any]]:
    """``(file, header)`` of every file of a DICOM series folder (``HEADER_TAGS``, no pixels).

    Raises:
        VolumeReadError: the folder holds no file.
        CorruptFileError: a file is not DICOM Part 10, or its header cannot be read.
    """
    import pydicom

    files = dicom_files(folder)
    if not files:
        raise VolumeReadError("DICOM folder holds no files", file=folder,
                              fix="point manifest.csv at the folder that holds the .dcm files")
    out = []
    for f in files:
        with f.open("rb") as fh:
            head = fh.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            raise CorruptFileError(
                "not a DICOM Part-10 file: no 'DICM' marker after the 128-byte preamble",
                file=f, fix="remove non-DICOM files from the series folder, or convert old "
                            "ACR-NEMA files to DICOM Part 10 (e.g. `gdcmconv` or `dcmconv`)")
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        except Exception as exc:
            raise CorruptFileError(f"DICOM header unreadable ({exc})", file=f,
                                   fix="export the series again") from exc
        out.append((f, ds))
    return out
