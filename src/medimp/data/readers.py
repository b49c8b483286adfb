"""Image readers: one per format, chosen by name or by what is on disk (MONAI-style).

Readers are registered by name with the :func:`register_reader` decorator (the mechanism of
``medimp.models._registry``); :func:`get_reader` builds one by name and :func:`list_readers`
lists them. ``read_volume(path)`` returns a :class:`Volume` (a float32 3D array in the file's
voxel order and its 4x4 voxel-to-world affine in RAS+ millimetres, nibabel's convention) for

* a ``.nii`` / ``.nii.gz`` file, read with nibabel (:class:`NiftiReader`);
* a folder holding one DICOM series, read with SimpleITK after the headers were checked with
  pydicom (:class:`DicomSeriesReader`).

``read_series(path)`` returns a :class:`DynamicSeries` (one 4D acquisition, time last, with the
frame times in seconds when the file says them) for a 4D NIfTI (times from its dcm2niix/BIDS
JSON sidecar or the header's time step) or a dynamic DICOM series (classic one-file-per-slice or
enhanced multi-frame, see :mod:`medimp.data.dicom_dynamic`). Choosing the frames of each phase
is :mod:`medimp.data.dynamic`'s job.

The readers refuse what would silently corrupt training, each with a typed error that names the
file and the fix: truncated or mis-named gzip, header dims that do not match the data, NaN/Inf
voxels, zero or singular affines, 4D data, DICOM files without the ``DICM`` preamble, several
series in one folder, missing or duplicate slices, non-uniform spacing, varying
rows/columns/orientation. A constant volume is *not* an error here (see ``validate``).
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medimp._registry import Registry
from medimp.data._errors import (
    CorruptFileError,
    DicomSeriesError,
    InvalidVolumeError,
    VolumeReadError,
)
from medimp.data.dicom_dynamic import read_dynamic_dicom
from medimp.data.dicom_header import (
    clock_seconds,
    is_multiframe,
    slices_of,
    unwrap_midnight,
)
from medimp.data.dicom_header import read_dicom_headers as _read_dicom_headers
from medimp.data.geometry import voxel_sizes

__all__ = [
    "READERS",
    "DicomSeriesReader",
    "DynamicSeries",
    "ImageReader",
    "NiftiReader",
    "Volume",
    "get_reader",
    "list_dicom_series",
    "list_readers",
    "read_series",
    "read_volume",
    "register_reader",
]

_NIFTI_FIX = "export the volume again (e.g. with dcm2niix) and check the copy finished"


@dataclass(frozen=True)
class Volume:
    """One 3D image.

    Attributes:
        array: float32 voxels, shape (I, J, K) in the file's voxel order.
        affine: float64 4x4 voxel-index -> world (RAS+, mm) matrix.
        spacing: voxel size along I, J, K in mm (column norms of the affine).
        path: the file or DICOM folder it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    path: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class DynamicSeries:
    """One dynamic (4D) acquisition: a 3D volume per time frame.

    Attributes:
        array: float32 voxels, shape (I, J, K, T), time last.
        affine: float64 4x4 voxel-index -> world (RAS+, mm) matrix, shared by every frame.
        times: seconds of each frame after the first one (strictly increasing), or ``None``
            when the file does not say them (only frame indices can then choose phases).
        time_source: where the times come from (e.g. ``"FrameTimesStart of x.json"``).
        path: the file or DICOM folder it was read from.
    """

    array: np.ndarray
    affine: np.ndarray
    times: np.ndarray | None
    time_source: str
    path: Path

    @property
    def n_frames(self) -> int:
        return int(self.array.shape[3])

    @property
    def spacing(self) -> tuple[float, float, float]:
        return _spacing(self.affine)

    def frame(self, t: int) -> Volume:
        """Frame ``t`` as a :class:`Volume` (a copy, contiguous)."""
        return Volume(array=np.ascontiguousarray(self.array[..., int(t)]), affine=self.affine,
                      spacing=self.spacing, path=self.path)


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:

    return voxel_sizes(affine)


def _check_affine(affine: np.ndarray, path: Path) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise InvalidVolumeError(
            f"affine is not a finite 4x4 matrix: {affine.tolist()}", file=path,
            fix="write a valid sform/qform (orientation and voxel sizes) into the header")
    lin = affine[:3, :3]
    scale = max(float(np.abs(lin).max()), 1e-30)
    if np.abs(np.linalg.det(lin)) <= 1e-9 * scale**3:
        raise InvalidVolumeError(
            "zero or singular affine (voxel size 0 or collinear axes): world coordinates "
            "and spacing are undefined", file=path,
            fix="write a valid sform/qform with voxel sizes > 0 into the header")
    return affine


def _to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim > 3:
        raise InvalidVolumeError(
            f"{array.ndim}D image of shape {tuple(array.shape)}; one manifest row must be one "
            "3D volume", file=path,
            fix="a dynamic (4D) series: write 'dynamic' in the phase column of its manifest.csv "
                "row and say in study.yaml how phases are chosen (docs/data.md), or split it "
                "into one 3D file per phase, each its own manifest.csv row")
    if array.ndim < 3:
        raise InvalidVolumeError(
            f"{array.ndim}D image of shape {tuple(array.shape)}; a 3D volume is expected",
            file=path, fix="give the full 3D volume, not a single slice")
    return array


def _check_finite(array: np.ndarray, path: Path) -> None:
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum() - n_nan)
        raise InvalidVolumeError(
            f"{n_nan} NaN and {n_inf} Inf voxels out of {array.size}", file=path,
            fix="re-export the volume; if the non-finite voxels are known to be background, "
                "replace them with 0 before adding the file to the cohort")


class _ReaderRegistry(Registry["type[ImageReader]"]):
    """Readers are tried in registration order; their errors say how to fix them."""

    def unknown_error(self, name: object) -> Exception:
        return VolumeReadError(f"unknown reader {name!r}; choose one of {self.names()}",
                               fix=f"use one of {self.names()}")

    def duplicate_error(self, name: str) -> Exception:
        return VolumeReadError(f"image reader {name!r} is already registered",
                               fix="choose another name")


_READERS = _ReaderRegistry("image reader", VolumeReadError, ordered=True)
READERS = _READERS  # public view of the registry (name -> reader class)


def register_reader(cls: type[ImageReader] | None = None, *, name: str | None = None) -> Any:
    """Register an :class:`ImageReader` subclass under ``name`` (default: its ``name``).

    Usable as ``@register_reader`` or ``@register_reader(name="...")``. Readers are tried in
    registration order when :func:`read_volume` guesses the format from the path.
    """

    def key(c: type[ImageReader]) -> str:
        if not c.name:
            raise VolumeReadError(f"reader {c.__name__} has no name",
                                  fix="set its `name` class attribute or pass name=")
        return c.name

    return _READERS.decorator(cls, name=name, default_name=key)


def list_readers() -> list[str]:
    """Names accepted by :func:`get_reader`, in registration order."""
    return _READERS.names()


class ImageReader:
    """Base class: ``verify_suffix(path)`` says whether this reader handles ``path``;
    ``read(path)`` returns a checked 3D :class:`Volume`; ``read_series(path)`` a checked
    4D :class:`DynamicSeries` (formats that can hold a dynamic acquisition)."""

    name: ClassVar[str] = ""

    def __init__(self, check_finite: bool = True) -> None:
        self.check_finite = check_finite

    def verify_suffix(self, path: str | os.PathLike[str]) -> bool:  # pragma: no cover
        raise NotImplementedError

    def read(self, path: str | os.PathLike[str]) -> Volume:  # pragma: no cover
        raise NotImplementedError

    def read_series(self, path: str | os.PathLike[str]) -> DynamicSeries:
        raise VolumeReadError(f"the {self.name!r} reader cannot read a dynamic (4D) series",
                              file=path, fix="give a 4D NIfTI or a dynamic DICOM series folder")

    def _finish_series(self, array: np.ndarray, affine: np.ndarray, times: np.ndarray | None,
                       time_source: str, path: Path) -> DynamicSeries:
        array = np.asarray(array)
        while array.ndim > 4 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 4:
            raise InvalidVolumeError(
                f"{array.ndim}D image of shape {tuple(array.shape)}; a dynamic series must be "
                "4D (x, y, z, time)", file=path,
                fix="for a single 3D volume write its phase (not 'dynamic') in manifest.csv")
        affine = _check_affine(affine, path)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self.check_finite:
            _check_finite(array, path)
        if times is not None:
            times = _check_times(np.asarray(times, dtype=np.float64), array.shape[3],
                                 time_source, path)
        return DynamicSeries(array=array, affine=affine, times=times, time_source=time_source,
                             path=path)

    def _finish(self, array: np.ndarray, affine: np.ndarray, path: Path) -> Volume:
        array = _to_3d(np.asarray(array), path)
        affine = _check_affine(affine, path)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self.check_finite:
            _check_finite(array, path)
        return Volume(array=array, affine=affine, spacing=_spacing(affine), path=path)


def _check_times(times: np.ndarray, n_frames: int, source: str, path: Path) -> np.ndarray:
    """Frame times as seconds after the first frame; errors for a wrong count or order."""
    if times.ndim != 1 or times.size != n_frames:
        raise InvalidVolumeError(
            f"{source} gives {times.size} frame times for {n_frames} frames", file=path,
            fix="write one time per frame (the sidecar of another series?), or remove the "
                "times and choose the phases by frame index (dynamic.select: index)")
    if not np.isfinite(times).all():
        raise InvalidVolumeError(f"{source} holds non-finite frame times", file=path,
                                 fix="correct the frame times")
    steps = np.diff(times)
    if (steps <= 0).any():
        i = int(np.flatnonzero(steps <= 0)[0])
        raise InvalidVolumeError(
            f"frame times are not increasing: frame {i} at {times[i]:g} s, frame {i + 1} at "
            f"{times[i + 1]:g} s ({source})", file=path,
            fix="the frames are out of order or the times are wrong: re-export the series "
                "(e.g. dcm2niix) or correct the times")
    return times - times[0]


# BIDS / dcm2niix sidecar keys holding one time per frame, in order of preference
_SIDECAR_TIME_KEYS = ("FrameTimesStart", "VolumeTiming", "AcquisitionTime", "FrameAcquisitionTime")


def nifti_sidecar(path: Path) -> Path:
    """The JSON sidecar of a NIfTI file (``x.nii.gz`` -> ``x.json``), as dcm2niix writes it."""
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _sidecar_times(path: Path) -> tuple[np.ndarray, str] | None:
    import json

    side = nifti_sidecar(path)
    if not side.is_file():
        return None
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"JSON sidecar unreadable ({exc})", file=side,
                               fix="correct the JSON, or remove the sidecar") from exc
    if not isinstance(meta, dict):
        raise CorruptFileError("JSON sidecar is not an object", file=side,
                               fix="write the sidecar as dcm2niix does ({\"key\": value, ...})")
    for key in _SIDECAR_TIME_KEYS:
        value = meta.get(key)
        if not isinstance(value, list):
            continue  # dcm2niix writes a single AcquisitionTime string for the first frame
        try:
            if all(isinstance(v, (int, float)) for v in value):
                times = np.asarray(value, dtype=np.float64)
            else:  # clock times: a series may cross midnight
                times = unwrap_midnight(np.asarray([clock_seconds(v) for v in value],
                                                   dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise CorruptFileError(f"sidecar {key} is not a list of times ({exc})", file=side,
                                   fix=f"write {key} as seconds (numbers) or HH:MM:SS.ffffff "
                                       "strings") from exc
        return times, f"{key} of {side.name}"
    return None


@register_reader
class NiftiReader(ImageReader):
    """NIfTI-1/NIfTI-2 files (``.nii``, ``.nii.gz``) via nibabel, with integrity checks."""

    name = "nifti"
    suffixes: ClassVar[tuple[str, ...]] = (".nii", ".nii.gz")

    def verify_suffix(self, path: str | os.PathLike[str]) -> bool:
        return str(path).lower().endswith(self.suffixes)

    def _load(self, path: Path) -> tuple[Any, np.ndarray]:
        import nibabel as nib

        if not path.is_file():
            raise VolumeReadError("file not found", file=path,
                                  fix="check the path in manifest.csv (relative to the cohort)")
        raw = path.read_bytes()
        if str(path).lower().endswith(".gz"):
            if raw[:2] != b"\x1f\x8b":
                raise CorruptFileError(
                    "named .nii.gz but not gzip-compressed", file=path,
                    fix="if it is a plain NIfTI, rename it to .nii (and update manifest.csv); "
                        "otherwise " + _NIFTI_FIX)
            try:
                raw = gzip.decompress(raw)
            except (EOFError, OSError, zlib.error) as exc:
                raise CorruptFileError(f"truncated or damaged gzip data ({exc})", file=path,
                                       fix=_NIFTI_FIX) from exc
        img = None
        for cls in (nib.Nifti1Image, nib.Nifti2Image):
            try:
                img = cls.from_bytes(raw)
                break
            except Exception:  # nibabel raises several types for a wrong header
                continue
        if img is None:
            hint = " (it is gzip data: rename it to .nii.gz)" if raw[:2] == b"\x1f\x8b" else ""
            raise CorruptFileError(f"not a NIfTI file: the header cannot be parsed{hint}",
                                   file=path, fix=_NIFTI_FIX)
        hdr = img.header
        shape = tuple(int(s) for s in hdr.get_data_shape())
        expected = int(np.prod(shape)) * hdr.get_data_dtype().itemsize
        offset = int(getattr(img.dataobj, "offset", hdr.get_data_offset()))
        available = len(raw) - offset
        if available != expected:
            raise InvalidVolumeError(
                f"header dims {shape} ({hdr.get_data_dtype()}) need {expected} bytes of voxel "
                f"data but the file holds {available}", file=path,
                fix="the header does not match the data (or the file was cut): " + _NIFTI_FIX)
        try:
            array = img.get_fdata(dtype=np.float32)
        except Exception as exc:
            raise CorruptFileError(f"voxel data unreadable ({exc})", file=path,
                                   fix=_NIFTI_FIX) from exc
        return img, array

    def read(self, path: str | os.PathLike[str]) -> Volume:
        path = Path(path)
        img, array = self._load(path)
        return self._finish(array, img.affine, path)

    def read_series(self, path: str | os.PathLike[str]) -> DynamicSeries:
        """A 4D NIfTI (time last); frame times from the JSON sidecar (``FrameTimesStart``,
        ``VolumeTiming`` or a list ``AcquisitionTime``) or else the header's time step."""
        path = Path(path)
        img, array = self._load(path)
        found = _sidecar_times(path)
        if found is not None:
            times, source = found
        else:
            times, source = None, "none (no JSON sidecar with frame times)"
            n_t = array.shape[3] if array.ndim >= 4 else 1
            step = float(img.header.get_zooms()[3]) if array.ndim >= 4 else 0.0
            unit = img.header.get_xyzt_units()[1]
            to_s = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}.get(unit)
            if step > 0 and to_s is not None:
                times = np.arange(n_t, dtype=np.float64) * step * to_s
                source = f"time step {step:g} {unit} of the NIfTI header"
        return self._finish_series(array, img.affine, times, source, path)




def list_dicom_series(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> files, for every series in ``folder`` (headers only)."""
    series: dict[str, list[Path]] = defaultdict(list)
    for f, ds in _read_dicom_headers(Path(folder)):
        series[str(getattr(ds, "SeriesInstanceUID", ""))].append(f)
    return dict(series)


@register_reader
class DicomSeriesReader(ImageReader):
    """One DICOM series from a folder, via SimpleITK, after pydicom header checks.

    Args:
        series_uid: which series to read when the folder holds several.
        spacing_tol: relative tolerance on the slice step (0.01 = 1%).
        check_finite: refuse NaN/Inf voxels.
    """

    name = "dicom"

    def __init__(self, series_uid: str | None = None, spacing_tol: float = 0.01,
                 check_finite: bool = True) -> None:
        super().__init__(check_finite=check_finite)
        self.series_uid = series_uid
        self.spacing_tol = spacing_tol

    def verify_suffix(self, path: str | os.PathLike[str]) -> bool:
        return Path(path).is_dir()

    def _select(self, folder: Path, headers: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
        series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
        for f, ds in headers:
            series[str(getattr(ds, "SeriesInstanceUID", ""))].append((f, ds))
        if self.series_uid is not None:
            if self.series_uid not in series:
                raise DicomSeriesError(
                    f"series {self.series_uid} not in the folder; it holds {sorted(series)}",
                    file=folder, fix="pass one of the listed SeriesInstanceUIDs")
            return series[self.series_uid]
        if len(series) > 1:
            desc = ", ".join(
                f"{uid} ({len(items)} files, "
                f"{getattr(items[0][1], 'SeriesDescription', '') or 'no description'})"
                for uid, items in sorted(series.items()))
            raise DicomSeriesError(
                f"{len(series)} DICOM series in one folder: {desc}", file=folder,
                fix="move each series into its own folder, or choose one with series_uid")
        return next(iter(series.values()))

    def _check_geometry(self, folder: Path, items: list[tuple[Path, Any]]) -> list[Path]:
        """Check rows/cols/orientation/spacing consistency; return files sorted along the normal."""
        if len(items) < 2:
            raise InvalidVolumeError("DICOM series has a single slice; a 3D volume is expected",
                                     file=folder, fix="export the whole series")
        f0, d0 = items[0]
        for f, ds in items:  # attributes present, RescaleSlope not 0 (medimp.data.dicom_header)
            slices_of(f, ds)
        iop0 = np.asarray(d0.ImageOrientationPatient, dtype=float)
        ps0 = np.asarray(getattr(d0, "PixelSpacing", [1.0, 1.0]), dtype=float)
        for f, ds in items[1:]:
            if (int(ds.Rows), int(ds.Columns)) != (int(d0.Rows), int(d0.Columns)):
                raise DicomSeriesError(
                    f"slice is {ds.Rows}x{ds.Columns} but {f0.name} is {d0.Rows}x{d0.Columns}",
                    file=f, fix="the folder mixes acquisitions: keep one series per folder")
            if not np.allclose(np.asarray(ds.ImageOrientationPatient, dtype=float), iop0,
                               atol=1e-4):
                raise DicomSeriesError(
                    f"slice orientation {list(ds.ImageOrientationPatient)} differs from "
                    f"{f0.name} ({iop0.tolist()})", file=f,
                    fix="the folder mixes acquisitions: keep one series per folder")
            ps = np.asarray(getattr(ds, "PixelSpacing", [1.0, 1.0]), dtype=float)
            if not np.allclose(ps, ps0, rtol=self.spacing_tol):
                raise DicomSeriesError(
                    f"pixel spacing {ps.tolist()} differs from {f0.name} ({ps0.tolist()})",
                    file=f, fix="the folder mixes acquisitions: keep one series per folder")
        normal = np.cross(iop0[:3], iop0[3:])
        pos = np.array([np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)
                        for _, ds in items])
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
        files = [items[i][0] for i in order]
        diffs = np.diff(pos)
        tiny = 1e-3
        dup = np.flatnonzero(diffs < tiny)
        if dup.size:
            i = int(dup[0])
            raise DicomSeriesError(
                f"duplicate slice position {pos[i]:.3f} mm in {files[i].name} and "
                f"{files[i + 1].name} ({dup.size} duplicate(s))", file=folder,
                fix="remove the repeated files (or split the repeated acquisition into its own "
                    "folder); a dynamic series (several time points) needs 'dynamic' in the "
                    "phase column of manifest.csv")
        step = float(np.median(diffs))
        bad = np.flatnonzero(np.abs(diffs - step) > self.spacing_tol * step)
        if bad.size:
            i = int(bad[0])
            ratio = diffs[i] / step
            if round(ratio) >= 2 and abs(ratio - round(ratio)) <= self.spacing_tol * ratio:
                raise DicomSeriesError(
                    f"missing slice(s): gap of {diffs[i]:.3f} mm between {files[i].name} and "
                    f"{files[i + 1].name} where the step is {step:.3f} mm (about "
                    f"{round(ratio) - 1} slice(s) missing; {bad.size} gap(s) in all)",
                    file=folder, fix="export the complete series again")
            raise DicomSeriesError(
                f"non-uniform slice spacing: {diffs[i]:.3f} mm between {files[i].name} and "
                f"{files[i + 1].name}, median step {step:.3f} mm (tolerance "
                f"{self.spacing_tol:.1%})", file=folder,
                fix="resample the series to uniform slices, or raise spacing_tol if the "
                    "difference is rounding")
        return files

    def read(self, path: str | os.PathLike[str]) -> Volume:
        import SimpleITK as sitk  # noqa: N813

        folder = Path(path)
        if not folder.is_dir():
            raise VolumeReadError("DICOM series folder not found", file=folder,
                                  fix="check the path in manifest.csv (relative to the cohort)")
        items = self._select(folder, _read_dicom_headers(folder))
        if any(is_multiframe(ds) for _, ds in items):
            series = self._series_of(folder, items)  # enhanced multi-frame: one time point?
            if series.n_frames > 1:
                raise InvalidVolumeError(
                    f"dynamic series of {series.n_frames} time points where one 3D volume is "
                    "expected", file=folder,
                    fix="write 'dynamic' in the phase column of its manifest.csv row (phases "
                        "are then chosen by study.yaml's dynamic section, docs/data.md)")
            return self._finish(series.array[..., 0], series.affine, folder)
        files = self._check_geometry(folder, items)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in files])
        try:
            img = reader.Execute()
        except RuntimeError as exc:
            raise CorruptFileError(f"SimpleITK could not read the series ({exc})", file=folder,
                                   fix="export the series again") from exc
        if img.GetNumberOfComponentsPerPixel() != 1:
            raise InvalidVolumeError("multi-component (e.g. RGB) DICOM pixels", file=folder,
                                     fix="export a greyscale series")
        array = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (z,y,x) -> (i,j,k)
        direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
        lps = np.eye(4)
        lps[:3, :3] = direction @ np.diag(img.GetSpacing())
        lps[:3, 3] = img.GetOrigin()
        ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
        return self._finish(array, ras, folder)

    def _series_of(self, folder: Path, items: list[tuple[Path, Any]]) -> DynamicSeries:
        array, affine, times, source = read_dynamic_dicom(folder, [f for f, _ in items],
                                                          self.spacing_tol)
        return self._finish_series(array, affine, times, source, folder)

    def read_series(self, path: str | os.PathLike[str]) -> DynamicSeries:
        """A dynamic series from a folder: classic files split into time points, or enhanced
        multi-frame files read through their per-frame functional groups."""
        folder = Path(path)
        if not folder.is_dir():
            raise VolumeReadError("DICOM series folder not found", file=folder,
                                  fix="check the path in manifest.csv (relative to the cohort)")
        return self._series_of(folder, self._select(folder, _read_dicom_headers(folder)))


def get_reader(name: str, **kwargs: Any) -> ImageReader:
    """Create a registered reader by name (``"nifti"``, ``"dicom"``, see :func:`list_readers`)."""
    return _READERS.lookup(name)(**kwargs)


def _guess_reader(path: Path) -> str:
    if not path.exists():
        raise VolumeReadError("file not found", file=path,
                              fix="check the path in manifest.csv (relative to the cohort)")
    for name, cls in _READERS.items():
        try:
            if cls().verify_suffix(path):
                return name
        except TypeError:  # a reader that needs arguments cannot be guessed
            continue
    raise VolumeReadError(
        f"unknown image format {''.join(path.suffixes) or '(no suffix)'}", file=path,
        fix="convert to NIfTI (.nii.gz) or list the DICOM series folder instead")


def _make_reader(path: Path, reader: str | None, series_uid: str | None,
                 check_finite: bool) -> ImageReader:
    reader = reader or _guess_reader(path)
    kwargs: dict[str, Any] = {"check_finite": check_finite}
    if series_uid is not None and reader != "dicom":
        raise VolumeReadError(
            f"series_uid {series_uid} was given for a {reader} file; it chooses a series in a "
            "DICOM folder", file=path, fix="give series_uid only for a DICOM series folder")
    if reader == "dicom":
        kwargs["series_uid"] = series_uid
    return get_reader(reader, **kwargs)


def read_series(
    path: str | os.PathLike[str],
    *,
    reader: str | None = None,
    series_uid: str | None = None,
    check_finite: bool = True,
) -> DynamicSeries:
    """Read one dynamic (4D) acquisition: a 4D NIfTI or a dynamic DICOM series folder.

    Args:
        path: a ``.nii``/``.nii.gz`` file (time as the 4th axis), or a folder holding one
            dynamic DICOM series (classic or enhanced multi-frame).
        reader: force a reader by name instead of guessing.
        series_uid: for a DICOM folder holding several series, the one to read.
        check_finite: raise :class:`InvalidVolumeError` on NaN/Inf voxels.

    Raises:
        VolumeReadError, InvalidVolumeError: as :func:`read_volume`, plus frame times that are
            not one per frame or not increasing, and time points of different geometry.
    """
    path = Path(path)
    return _make_reader(path, reader, series_uid, check_finite).read_series(path)


def read_volume(
    path: str | os.PathLike[str],
    *,
    reader: str | None = None,
    series_uid: str | None = None,
    check_finite: bool = True,
) -> Volume:
    """Read one 3D volume, choosing the reader by what is on disk.

    Args:
        path: a ``.nii``/``.nii.gz`` file, or a folder holding one DICOM series.
        reader: force a reader by name instead of guessing.
        series_uid: for a DICOM folder holding several series, the one to read.
        check_finite: raise :class:`InvalidVolumeError` on NaN/Inf voxels.

    Raises:
        VolumeReadError: missing or unknown file (``CorruptFileError``, ``DicomSeriesError``
            for the specific cases); InvalidVolumeError: unusable content.
    """
    path = Path(path)
    return _make_reader(path, reader, series_uid, check_finite).read(path)
