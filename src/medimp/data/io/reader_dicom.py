"""The DICOM series reader (a folder of one series, classic or enhanced, 3D or dynamic);
registered as ``dicom`` (``medimp.data.io.readers``)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medimp.data._errors import (
    CorruptFileError,
    DicomSeriesError,
    InvalidVolumeError,
    VolumeReadError,
)
from medimp.data.io._reader_base import (
    DynamicSeries,
    ImageReader,
    Volume,
    register_reader,
)
from medimp.data.io.dicom_dynamic import read_dynamic_dicom
from medimp.data.io.dicom_header import (
    is_multiframe,
    slices_of,
)
from medimp.data.io.dicom_header import read_dicom_headers as _read_dicom_headers


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
        for f, ds in items:  # attributes present, RescaleSlope not 0 (medimp.data.io.dicom_header)
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
        array, affine, times, source = read_dynamic_dicom(folder, items, self.spacing_tol)
        return self._finish_series(array, affine, times, source, folder)

    def read_series(self, path: str | os.PathLike[str]) -> DynamicSeries:
        """A dynamic series from a folder: classic files split into time points, or enhanced
        multi-frame files read through their per-frame functional groups."""
        folder = Path(path)
        if not folder.is_dir():
            raise VolumeReadError("DICOM series folder not found", file=folder,
                                  fix="check the path in manifest.csv (relative to the cohort)")
        return self._series_of(folder, self._select(folder, _read_dicom_headers(folder)))
