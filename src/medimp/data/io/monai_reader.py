"""medimp's readers as a MONAI ``ImageReader``: ``LoadImage(reader=MedimpReader())``.

A MONAI pipeline then reads exactly what medimp reads, with medimp's checks (docs/data.md): a
NIfTI file or a DICOM series folder (classic or enhanced), refused with medimp's typed errors
when it is truncated, not gzip, holds NaN/Inf voxels, has a singular affine, several series, a
missing or duplicate slice, a ``RescaleSlope`` of 0... With ``dynamic=True`` a 4D NIfTI or a
dynamic DICOM series is read whole, time last (``original_channel_dim`` -1, so MONAI's
``EnsureChannelFirst`` makes the frames channels), with its frame times in the metadata.

The array is in the file's voxel order and the affine maps voxels to RAS+ millimetres, as
MONAI's ``NibabelReader`` gives them (``space`` RAS), so ``Orientation``/``Spacing`` treat it as
they treat nibabel's output.

MONAI's ``LoadImage``/``LoadImaged`` keep their own readers behind the one given: when it
refuses a file they try those, and MONAI's NIfTI reader loads what medimp refused (a NaN
volume) silently. :func:`medimp_only` removes that fallback::

    load = medimp_only(LoadImaged(keys=["pre", "arterial"], reader=MedimpReader()))

A refused file is then a ``RuntimeError`` of MONAI holding medimp's message (file, problem,
fix); ``MedimpReader().read(path)`` raises medimp's typed error itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader as MonaiImageReader
from monai.utils import MetaKeys, SpaceKeys

from medimp.data.io.readers import DynamicSeries, Volume, get_reader, read_series, read_volume
from medimp.data.io.readers import list_readers as _list_readers

__all__ = ["MedimpReader", "medimp_only"]


def _paths(data: Sequence[Any] | str | os.PathLike[str]) -> list[Path]:
    if isinstance(data, (str, os.PathLike)):
        return [Path(data)]
    return [Path(d) for d in data]


class MedimpReader(MonaiImageReader):
    """A MONAI image reader backed by :func:`medimp.data.read_volume` / :func:`read_series`.

    Args:
        series_uid: for a DICOM folder holding several series, the one to read.
        check_finite: refuse NaN/Inf voxels (medimp's default).
        dynamic: read a whole 4D acquisition (time last) instead of one 3D volume.
    """

    def __init__(self, series_uid: str | None = None, check_finite: bool = True,
                 dynamic: bool = False, **kwargs: Any) -> None:
        super().__init__()
        self.series_uid = series_uid
        self.check_finite = check_finite
        self.dynamic = dynamic
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[Any] | str | os.PathLike[str]) -> bool:
        """A ``.nii``/``.nii.gz`` file or a folder (a DICOM series), as medimp's readers."""

        readers = [get_reader(name) for name in _list_readers()]
        return all(any(r.verify_suffix(p) for r in readers) for p in _paths(filename))

    def read(self, data: Sequence[Any] | str | os.PathLike[str],
             **kwargs: Any) -> list[Volume | DynamicSeries] | Volume | DynamicSeries:
        """Read each path with medimp's checks (errors name the file and the fix)."""
        read = read_series if self.dynamic else read_volume
        # series_uid picks a series in a DICOM folder; one reader may serve NIfTI keys as well
        out = [read(p, series_uid=self.series_uid if p.is_dir() else None,
                    check_finite=self.check_finite) for p in _paths(data)]
        return out if len(out) > 1 else out[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """``(array, metadata)`` as MONAI's readers give them; several images are stacked on
        a new first (channel) axis and must share their grid."""
        from monai.data.image_reader import _copy_compatible_dict, _stack_images

        arrays: list[np.ndarray] = []
        meta: dict[str, Any] = {}
        for item in img if isinstance(img, (list, tuple)) else [img]:
            header: dict[str, Any] = {
                MetaKeys.AFFINE: np.asarray(item.affine, dtype=np.float64),
                MetaKeys.ORIGINAL_AFFINE: np.asarray(item.affine, dtype=np.float64).copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(item.array.shape[:3]),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
                "filename_or_obj": str(item.path),
                "pixdim": np.asarray([1.0, *item.spacing]),
            }
            if isinstance(item, DynamicSeries):
                header[MetaKeys.ORIGINAL_CHANNEL_DIM] = -1  # time last: EnsureChannelFirst
                header["frame_times"] = (np.asarray(item.times) if item.times is not None
                                         else "none")
                header["time_source"] = item.time_source
            arrays.append(item.array)
            _copy_compatible_dict(header, meta)
        return _stack_images(arrays, meta), meta


def medimp_only(transform: Any) -> Any:
    """``transform`` (a MONAI ``LoadImage`` or ``LoadImaged`` built with ``reader=
    MedimpReader(...)``) with MONAI's fallback readers removed, so that a file medimp refuses is
    an error instead of being read by another reader. Returns the same transform."""
    loader = getattr(transform, "_loader", transform)
    ours = [r for r in getattr(loader, "readers", []) if isinstance(r, MedimpReader)]
    if not ours:
        raise ValueError("medimp_only: the transform has no MedimpReader; build it with "
                         "reader=MedimpReader()")
    loader.readers = ours
    return transform
