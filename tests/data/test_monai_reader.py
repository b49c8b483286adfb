"""MONAI's LoadImage with medimp's reader: the same arrays and affines as medimp's readers (and
as MONAI's own NibabelReader on NIfTI), and medimp's checks."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from monai.transforms import EnsureChannelFirst, LoadImage, LoadImaged

from medimp.data import read_volume
from medimp.data._errors import DicomSeriesError, InvalidVolumeError
from medimp.data.io.monai_reader import MedimpReader, medimp_only
from medimp.data.io.readers import read_series
from tests.data.conftest import write_dicom_series, write_nifti


def _volumes(cohort: Path, n: int = 3) -> list[Path]:
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str)
    return [cohort / p for p in manifest["path"][:n]]


@pytest.mark.parametrize("fmt", ["nifti", "dicom"])
def test_loadimage_reads_what_medimp_reads(make_cohort, fmt: str) -> None:
    cohort = make_cohort(10, (16, 16, 16), 0, fmt)
    load = medimp_only(LoadImage(reader=MedimpReader(), image_only=True))
    for path in _volumes(cohort):
        img = load(path)
        vol = read_volume(path)
        np.testing.assert_array_equal(np.asarray(img), vol.array)
        np.testing.assert_allclose(np.asarray(img.affine), vol.affine)
        assert img.meta["filename_or_obj"] == str(path)
        if fmt == "nifti":  # what MONAI's own NIfTI reader makes of the same file
            ref = LoadImage(reader="NibabelReader", image_only=True)(path)
            np.testing.assert_allclose(np.asarray(img), np.asarray(ref), rtol=1e-6)
            np.testing.assert_allclose(np.asarray(img.affine), np.asarray(ref.affine))


def test_several_phases_become_channels(make_cohort) -> None:
    cohort = make_cohort(10, (16, 16, 16), 0, "nifti")
    paths = _volumes(cohort, 3)  # the three phases of the first exam share one grid
    img = LoadImage(reader=MedimpReader(), image_only=True)(paths)
    assert tuple(img.shape) == (3, 16, 16, 16)
    np.testing.assert_array_equal(np.asarray(img[1]), read_volume(paths[1]).array)


def test_medimps_checks_apply(tmp_path: Path) -> None:
    bad = np.ones((8, 8, 6), np.float32)
    bad[1, 2, 3] = np.nan
    nan_file = write_nifti(tmp_path / "nan.nii.gz", bad)
    with pytest.raises(InvalidVolumeError, match="1 NaN"):
        MedimpReader().read(nan_file)
    # MONAI falls back on its own readers when the one given refuses a file: its NIfTI reader
    # loads the NaN silently; medimp_only removes the fallback
    assert np.isnan(np.asarray(LoadImage(reader=MedimpReader(), image_only=True)(nan_file))).any()
    with pytest.raises(RuntimeError, match="1 NaN and 0 Inf voxels"):
        medimp_only(LoadImage(reader=MedimpReader()))(nan_file)
    with pytest.raises(RuntimeError, match="1 NaN and 0 Inf voxels"):
        medimp_only(LoadImaged(keys=["pre"], reader=MedimpReader()))({"pre": nan_file})
    with pytest.raises(ValueError, match="no MedimpReader"):
        medimp_only(LoadImage())
    arr = np.random.default_rng(0).integers(0, 100, (8, 8, 5)).astype(np.float32)
    write_dicom_series(tmp_path / "gap", arr, positions=[0, 2, 4, 8, 10])
    with pytest.raises(DicomSeriesError, match="missing slice"):
        MedimpReader().read(tmp_path / "gap")
    assert MedimpReader().verify_suffix(tmp_path / "gap")
    assert MedimpReader().verify_suffix([nan_file, tmp_path / "gap"])
    assert not MedimpReader().verify_suffix(tmp_path / "x.png")


def test_dynamic_series_frames_become_channels(tmp_path: Path) -> None:
    import json

    data = np.random.default_rng(1).uniform(0, 1, (6, 7, 5, 4)).astype(np.float32)
    path = tmp_path / "dce.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    (tmp_path / "dce.json").write_text(json.dumps({"FrameTimesStart": [0, 10, 20, 40]}))
    img = LoadImage(reader=MedimpReader(dynamic=True), image_only=True)(path)
    np.testing.assert_allclose(img.meta["frame_times"], [0, 10, 20, 40])
    img = EnsureChannelFirst()(img)
    assert tuple(img.shape) == (4, 6, 7, 5)
    np.testing.assert_array_equal(np.asarray(img[2]), read_series(path).array[..., 2])
    with pytest.raises(InvalidVolumeError, match="4D image"):
        MedimpReader().read(path)  # one 3D volume expected without dynamic=True


def test_a_series_uid_reader_also_reads_nifti_keys(tmp_path: Path) -> None:
    """One MedimpReader(series_uid=...) behind LoadImaged serves a DICOM folder and NIfTI keys;
    a NIfTI file used to fail with a bare TypeError from the reader's constructor."""
    from pydicom.uid import generate_uid

    from medimp.data._errors import VolumeReadError

    uid = generate_uid()
    arr = np.random.default_rng(0).integers(0, 100, (8, 8, 5)).astype(np.float32)
    write_dicom_series(tmp_path / "dcm", arr, series_uid=uid)
    write_dicom_series(tmp_path / "dcm", arr + 1, series_uid=generate_uid(), prefix="other")
    nii = write_nifti(tmp_path / "pre.nii.gz")
    load = medimp_only(LoadImaged(keys=["pre", "dce"], reader=MedimpReader(series_uid=uid),
                                  image_only=True))
    out = load({"pre": nii, "dce": tmp_path / "dcm"})
    np.testing.assert_array_equal(np.asarray(out["pre"]), read_volume(nii).array)
    np.testing.assert_array_equal(np.asarray(out["dce"]), arr)
    with pytest.raises(VolumeReadError, match=r"series_uid .* DICOM folder"):
        read_volume(nii, series_uid=uid)
