"""Image readers: one per format, chosen by name or by what is on disk (MONAI-style).

``read_volume(path)`` returns a :class:`Volume` (a float32 3D array in the file's voxel order
and its 4x4 voxel-to-world affine in RAS+ millimetres, nibabel's convention) for

* a ``.nii`` / ``.nii.gz`` file, read with nibabel (:class:`NiftiReader`);
* a folder holding one DICOM series, read with SimpleITK after the headers were checked with
  pydicom (:class:`DicomSeriesReader`).

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

from medimp.data._errors import (
    CorruptFileError,
    DicomSeriesError,
    InvalidVolumeError,
    VolumeReadError,
)

__all__ = [
    "READERS",
    "DicomSeriesReader",
    "ImageReader",
    "NiftiReader",
    "Volume",
    "get_reader",
    "list_dicom_series",
    "read_volume",
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


def _spacing(affine: np.ndarray) -> tuple[float, float, float]:
    s = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return (float(s[0]), float(s[1]), float(s[2]))


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
            fix="split the series into one 3D file per phase (e.g. `fslsplit`) and list each "
                "as its own manifest.csv row")
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


class ImageReader:
    """Base class: ``verify_suffix(path)`` says whether this reader handles ``path``;
    ``read(path)`` returns a checked :class:`Volume`."""

    name: ClassVar[str] = ""

    def __init__(self, check_finite: bool = True) -> None:
        self.check_finite = check_finite

    def verify_suffix(self, path: str | os.PathLike[str]) -> bool:  # pragma: no cover
        raise NotImplementedError

    def read(self, path: str | os.PathLike[str]) -> Volume:  # pragma: no cover
        raise NotImplementedError

    def _finish(self, array: np.ndarray, affine: np.ndarray, path: Path) -> Volume:
        array = _to_3d(np.asarray(array), path)
        affine = _check_affine(affine, path)
        array = np.ascontiguousarray(array, dtype=np.float32)
        if self.check_finite:
            _check_finite(array, path)
        return Volume(array=array, affine=affine, spacing=_spacing(affine), path=path)


class NiftiReader(ImageReader):
    """NIfTI-1/NIfTI-2 files (``.nii``, ``.nii.gz``) via nibabel, with integrity checks."""

    name = "nifti"
    suffixes: ClassVar[tuple[str, ...]] = (".nii", ".nii.gz")

    def verify_suffix(self, path: str | os.PathLike[str]) -> bool:
        return str(path).lower().endswith(self.suffixes)

    def read(self, path: str | os.PathLike[str]) -> Volume:
        import nibabel as nib

        path = Path(path)
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
        return self._finish(array, img.affine, path)


# the only header fields the checks need: parsing just these is several times faster
_DICOM_TAGS = ["SeriesInstanceUID", "SeriesDescription", "ImagePositionPatient",
               "ImageOrientationPatient", "Rows", "Columns", "PixelSpacing", "NumberOfFrames"]


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _read_dicom_headers(folder: Path) -> list[tuple[Path, Any]]:
    import pydicom

    files = _dicom_files(folder)
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
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=_DICOM_TAGS)
        except Exception as exc:
            raise CorruptFileError(f"DICOM header unreadable ({exc})", file=f,
                                   fix="export the series again") from exc
        out.append((f, ds))
    return out


def list_dicom_series(folder: str | os.PathLike[str]) -> dict[str, list[Path]]:
    """SeriesInstanceUID -> files, for every series in ``folder`` (headers only)."""
    series: dict[str, list[Path]] = defaultdict(list)
    for f, ds in _read_dicom_headers(Path(folder)):
        series[str(getattr(ds, "SeriesInstanceUID", ""))].append(f)
    return dict(series)


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
        frames = max(int(getattr(ds, "NumberOfFrames", 1) or 1) for _, ds in items)
        if frames > 1:
            raise DicomSeriesError(
                f"multi-frame DICOM ({frames} frames in one file) is not supported", file=folder,
                fix="convert the series to NIfTI (e.g. `dcm2niix -z y`) and list the .nii.gz")
        if len(items) < 2:
            raise InvalidVolumeError("DICOM series has a single slice; a 3D volume is expected",
                                     file=folder, fix="export the whole series")
        f0, d0 = items[0]
        for attr in ("ImagePositionPatient", "ImageOrientationPatient", "Rows", "Columns"):
            for f, ds in items:
                if getattr(ds, attr, None) is None:
                    raise DicomSeriesError(f"slice lacks {attr}", file=f,
                                           fix="export the series with full geometry headers")
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
                    "folder)")
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


READERS: dict[str, type[ImageReader]] = {
    NiftiReader.name: NiftiReader,
    DicomSeriesReader.name: DicomSeriesReader,
}


def get_reader(name: str, **kwargs: Any) -> ImageReader:
    """Create a reader by name (``"nifti"`` or ``"dicom"``)."""
    try:
        return READERS[name](**kwargs)
    except KeyError:
        raise VolumeReadError(f"unknown reader {name!r}; choose one of {sorted(READERS)}",
                              fix="use 'nifti' or 'dicom'") from None


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
    if reader is None:
        if not path.exists():
            raise VolumeReadError("file not found", file=path,
                                  fix="check the path in manifest.csv (relative to the cohort)")
        if path.is_dir():
            reader = "dicom"
        elif NiftiReader().verify_suffix(path):
            reader = "nifti"
        else:
            raise VolumeReadError(
                f"unknown image format {''.join(path.suffixes) or '(no suffix)'}", file=path,
                fix="convert to NIfTI (.nii.gz) or list the DICOM series folder instead")
    kwargs: dict[str, Any] = {"check_finite": check_finite}
    if reader == "dicom":
        kwargs["series_uid"] = series_uid
    return get_reader(reader, **kwargs).read(path)
