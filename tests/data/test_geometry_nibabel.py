"""Geometry of rotated volumes (medimp.data.io.geometry) against nibabel's reorientation of the same
file, and against what MONAI's Orientation transform (the preprocessing's) does with it."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimp.data.cohort._geometry_checks import header_geometry
from medimp.data.io.geometry import field_of_view, ras_shape, world_spacing
from medimp.data.io.readers import read_volume

ZOOMS = (3.4, 3.7, 2.7)  # all different: a wrong axis assignment cannot go unnoticed
SHAPE = (7, 9, 5)


def _rot(axis: int, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


ROTATIONS = {f"{deg}deg_about_{'xyz'[axis]}": _rot(axis, deg)
             for axis in range(3) for deg in (0, 30, 45, 90)}
ROTATIONS["oblique_x25_z50"] = _rot(2, 50) @ _rot(0, 25)
# the old nearest-axis rule gave these a 0 mm spacing ([3.4, 2.7, 0.0] for x40_y35)
ROTATIONS["oblique_x40_y35"] = _rot(1, 35) @ _rot(0, 40)
ROTATIONS["oblique_x45_y15"] = _rot(1, 15) @ _rot(0, 45)
ROTATIONS["oblique_y35_x60"] = _rot(0, 60) @ _rot(1, 35)
ROTATIONS["oblique_z120_y70_flipped"] = _rot(1, 70) @ _rot(2, 120) @ np.diag([-1.0, 1.0, 1.0])


def _affine(rot: np.ndarray) -> np.ndarray:
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag(ZOOMS)
    aff[:3, 3] = [-12.0, 30.0, 7.5]
    return aff


@pytest.mark.parametrize("name", sorted(ROTATIONS))
def test_geometry_equals_nibabels_reorientation_of_the_file(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.nii.gz"
    data = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    nib.save(nib.Nifti1Image(data, _affine(ROTATIONS[name])), path)
    canonical = nib.as_closest_canonical(nib.load(path))  # nibabel's own reorientation to RAS
    want_spacing = np.asarray(canonical.header.get_zooms()[:3], dtype=float)
    want_fov = want_spacing * np.asarray(canonical.shape[:3], dtype=float)

    geo = header_geometry(path)  # what validate and the pretrain checks read
    assert geo is not None
    np.testing.assert_allclose(geo["spacing_ras"], want_spacing, rtol=1e-5)
    np.testing.assert_allclose(geo["fov_mm"], want_fov, rtol=1e-5)
    assert sorted(geo["spacing_ras"]) == pytest.approx(sorted(ZOOMS), rel=1e-5)  # never 0 mm
    vol = read_volume(path)
    assert ras_shape(vol.affine, vol.shape) == tuple(canonical.shape[:3])
    np.testing.assert_allclose(vol.spacing, ZOOMS, rtol=1e-5)  # voxel order, unpermuted


@pytest.mark.parametrize("name", sorted(ROTATIONS))
def test_geometry_equals_the_grid_preprocessing_reorients_to(name: str) -> None:
    """MONAI's Orientation (step 1 of preprocessing) permutes the axes exactly as the
    geometry module says: spacing and field of view along its RAS axes are equal."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    aff = _affine(ROTATIONS[name])
    img = MetaTensor(torch.zeros((1, *SHAPE)), affine=torch.from_numpy(aff))
    out = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    got_spacing = np.sqrt((np.asarray(out.affine)[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(world_spacing(aff), got_spacing, rtol=1e-6)
    np.testing.assert_allclose(field_of_view(aff, SHAPE),
                               got_spacing * np.asarray(out.shape[1:], dtype=float), rtol=1e-6)


def test_the_double_oblique_volume_of_the_old_bug_has_no_zero_spacing(tmp_path: Path) -> None:
    """Beyond ~45 degrees the old nearest-axis rule put two voxel axes on one world axis and
    gave the third a spacing of 0 mm; validate --json printed [2.7, 3.7, 0.0]."""
    from medimp.data.io.geometry import suggest_preprocess

    aff = _affine(ROTATIONS["oblique_x40_y35"])
    spacing = world_spacing(aff)
    assert spacing == pytest.approx((3.4, 3.7, 2.7))  # nibabel's (checked above on the file)
    suggestion = suggest_preprocess([{"fov_mm": list(field_of_view(aff, SHAPE)),
                                      "spacing_ras": list(spacing)}])
    assert min(suggestion["native_spacing"]) >= 2.7


def test_a_nifti_header_nibabel_refuses_leaves_the_geometry_unknown(tmp_path: Path) -> None:
    """An unknown datatype code: nibabel raises its HeaderDataError, which escaped the header
    checks and stopped pretrain's preflight (it never raises on bad data); the reader names
    the file as corrupt."""
    import struct

    from medimp.data._errors import CorruptFileError

    path = tmp_path / "bad.nii"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), _affine(np.eye(3))), path)
    raw = bytearray(path.read_bytes())
    raw[70:72] = struct.pack("<h", 999)  # datatype
    path.write_bytes(bytes(raw))
    assert header_geometry(path) is None
    with pytest.raises(CorruptFileError):
        read_volume(path)
