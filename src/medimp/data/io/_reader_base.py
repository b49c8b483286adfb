"""The image readers' common part: the volume types, the checks every reader applies, the
registry and the reader base class (``medimp.data.io.readers`` re-exports them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medimp._registry import Registry
from medimp.data._errors import (
    InvalidVolumeError,
    VolumeReadError,
)
from medimp.data.io.geometry import voxel_sizes

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
