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
enhanced multi-frame, see :mod:`medimp.data.io.dicom_dynamic`). Choosing the frames of each phase
is :mod:`medimp.data.io.frames`'s job.

The readers refuse what would silently corrupt training, each with a typed error that names the
file and the fix: truncated or mis-named gzip, header dims that do not match the data, NaN/Inf
voxels, zero or singular affines, 4D data, DICOM files without the ``DICM`` preamble, several
series in one folder, missing or duplicate slices, non-uniform spacing, varying
rows/columns/orientation. A constant volume is *not* an error here (see ``validate``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medimp.data._errors import VolumeReadError
from medimp.data.io._reader_base import (
    _READERS,
    READERS,
    DynamicSeries,
    ImageReader,
    Volume,
    list_readers,
    register_reader,
)
from medimp.data.io.reader_nifti import NiftiReader, nifti_sidecar

# isort: split
# registered after the NIfTI reader: list_readers() and the guess keep that order
from medimp.data.io.reader_dicom import DicomSeriesReader, list_dicom_series

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
    "nifti_sidecar",
    "read_series",
    "read_volume",
    "register_reader",
]


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
