"""The NIfTI reader (``.nii``/``.nii.gz``, 3D or a 4D dynamic series with its dcm2niix/BIDS
sidecar); registered as ``nifti`` (``medimp.data.io.readers``)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medimp.data._errors import (
    CorruptFileError,
    InvalidVolumeError,
    VolumeReadError,
)
from medimp.data.io._reader_base import (
    _NIFTI_FIX,
    DynamicSeries,
    ImageReader,
    Volume,
    register_reader,
)
from medimp.data.io.dicom_header import (
    clock_seconds,
    unwrap_midnight,
)

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
