"""Readers on real files written with nibabel and pydicom: good volumes and every bad case."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimp.data import (
    CorruptFileError,
    DicomSeriesError,
    DicomSeriesReader,
    InvalidVolumeError,
    MedimpDataError,
    NiftiReader,
    VolumeReadError,
    get_reader,
    read_volume,
)
from tests.data.conftest import write_dicom_series, write_nifti

RNG = np.random.default_rng(1)


def _arr(shape=(8, 7, 6)) -> np.ndarray:
    return RNG.uniform(1, 100, shape).astype(np.float32)


# ---------------------------------------------------------------- NIfTI, good files


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_roundtrip_values_affine_spacing(tmp_path: Path, suffix: str) -> None:
    a = _arr()
    aff = np.array([[0, 0, 2.5, 10], [1.5, 0, 0, -5], [0, 1.2, 0, 3], [0, 0, 0, 1]], float)
    path = write_nifti(tmp_path / f"v{suffix}", a, aff)
    vol = read_volume(path)
    assert vol.array.dtype == np.float32 and vol.array.shape == (8, 7, 6)
    np.testing.assert_array_equal(vol.array, a)
    np.testing.assert_allclose(vol.affine, aff, atol=1e-5)
    assert vol.affine.dtype == np.float64
    np.testing.assert_allclose(vol.spacing, (1.5, 1.2, 2.5), rtol=1e-5)
    assert vol.path == path


def test_trailing_singleton_dims_are_squeezed(tmp_path: Path) -> None:
    a = _arr((6, 5, 4))
    path = write_nifti(tmp_path / "v.nii.gz", a[..., None])
    vol = read_volume(path)
    assert vol.shape == (6, 5, 4)
    np.testing.assert_array_equal(vol.array, a)


def test_scaled_integer_nifti_is_float(tmp_path: Path) -> None:
    img = nib.Nifti1Image(np.arange(120, dtype=np.int16).reshape(6, 5, 4), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / "i.nii.gz"))
    vol = read_volume(tmp_path / "i.nii.gz")
    assert vol.array.dtype == np.float32
    assert vol.array[0, 0, 0] == 10 and vol.array[-1, -1, -1] == pytest.approx(10 + 119 * 0.5)


def test_constant_fixture_volume_reads_without_error(medimp_original: Path) -> None:
    """The original's all-zero dummy volume is legal to read (validate warns about it)."""
    vol = read_volume(medimp_original / "dummy_mri_dataset" / "dummy_mri.nii.gz")
    assert vol.shape == (192, 144, 96)
    assert float(np.abs(vol.array).max()) == 0.0
    assert vol.spacing == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------- NIfTI, bad files


def test_truncated_nii_gz(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "t.nii.gz", _arr((16, 16, 16)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = path.read_bytes()
    with pytest.raises(CorruptFileError, match="truncated") as ei:
        read_volume(path)
    assert str(path) in str(ei.value) and "fix:" in str(ei.value)
    assert path.read_bytes() == before  # nothing changed on disk


def test_nii_gz_that_is_not_gzip(tmp_path: Path) -> None:
    plain = write_nifti(tmp_path / "plain.nii", _arr())
    path = tmp_path / "named.nii.gz"
    shutil.copy(plain, path)
    with pytest.raises(CorruptFileError, match="not gzip") as ei:
        read_volume(path)
    assert "rename it to .nii" in str(ei.value)


def test_random_bytes_are_not_nifti(tmp_path: Path) -> None:
    path = tmp_path / "junk.nii"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CorruptFileError, match="not a NIfTI"):
        read_volume(path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_header_dims_do_not_match_data(tmp_path: Path, suffix: str) -> None:
    a = _arr((8, 8, 6))
    hdr = nib.Nifti1Image(a, np.eye(4)).header.copy()
    hdr.set_data_shape((8, 8, 8))  # header promises 2 more slices than the data holds
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + a.tobytes(order="F")
    path = tmp_path / f"dims{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith("gz") else raw)
    with pytest.raises(InvalidVolumeError, match=r"header dims \(8, 8, 8\)"):
        read_volume(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_voxels(tmp_path: Path, bad: float) -> None:
    a = _arr()
    a[1, 2, 3] = bad
    a[0, 0, 0] = bad
    path = write_nifti(tmp_path / "nan.nii.gz", a)
    with pytest.raises(InvalidVolumeError, match="NaN") as ei:
        read_volume(path)
    msg = str(ei.value)
    assert ("2 NaN" in msg) if np.isnan(bad) else ("2 Inf" in msg)
    # the caller may still look at the data on purpose
    assert np.isfinite(read_volume(path, check_finite=False).array).sum() == a.size - 2


def test_zero_affine(tmp_path: Path) -> None:
    img = nib.Nifti1Image(_arr(), None)
    img.header.set_sform(np.zeros((4, 4)), code=1)  # a scanner export with an empty sform
    path = tmp_path / "zero.nii.gz"
    nib.save(img, str(path))
    assert not nib.load(str(path)).affine[:3, :3].any()
    with pytest.raises(InvalidVolumeError, match="singular affine"):
        read_volume(path)


def test_singular_affine(tmp_path: Path) -> None:
    img = nib.Nifti1Image(_arr(), None)
    singular = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    img.header.set_sform(singular, code=2)
    path = tmp_path / "sing.nii.gz"
    nib.save(img, str(path))
    assert np.linalg.det(nib.load(str(path)).affine[:3, :3]) == 0
    with pytest.raises(InvalidVolumeError, match="singular affine"):
        read_volume(path)


def test_4d_where_3d_expected(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "t.nii.gz", _arr((6, 5, 4, 3)))
    with pytest.raises(InvalidVolumeError, match="4D image of shape") as ei:
        read_volume(path)
    assert "one 3D file per phase" in str(ei.value)


def test_2d_refused(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "s.nii.gz", _arr((6, 5)))
    with pytest.raises(InvalidVolumeError, match="2D image"):
        read_volume(path)


def test_missing_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(VolumeReadError, match="not found"):
        read_volume(tmp_path / "nope.nii.gz")
    (tmp_path / "x.mha").write_bytes(b"x")
    with pytest.raises(VolumeReadError, match=r"unknown image format \.mha"):
        read_volume(tmp_path / "x.mha")


def test_errors_are_value_errors_with_context() -> None:
    err = InvalidVolumeError("bad", file="a.nii", fix="do x").with_context(
        patient="P1", exam="D15", phase="pre")
    assert isinstance(err, ValueError) and isinstance(err, MedimpDataError)
    assert str(err) == "a.nii: patient P1 exam D15 phase pre: bad; fix: do x"
    assert err.to_problem().patient == "P1"


def test_readers_by_name(tmp_path: Path) -> None:
    assert isinstance(get_reader("nifti"), NiftiReader)
    assert isinstance(get_reader("dicom", series_uid="1.2"), DicomSeriesReader)
    assert NiftiReader().verify_suffix("a/B.NII.GZ") and not NiftiReader().verify_suffix("a.mha")
    assert DicomSeriesReader().verify_suffix(tmp_path)
    with pytest.raises(VolumeReadError, match="unknown reader"):
        get_reader("analyze")


# ---------------------------------------------------------------- DICOM


def test_dicom_series_roundtrip(tmp_path: Path) -> None:
    a = RNG.integers(0, 4000, (8, 6, 5)).astype(np.float32)
    files = write_dicom_series(tmp_path / "s", a, spacing=(0.8, 0.9, 2.5))
    # write the files in shuffled names so that order must come from positions
    for f in files:
        f.rename(f.with_name(f"z{RNG.integers(1 << 30)}_{f.name}"))
    vol = read_volume(tmp_path / "s")
    np.testing.assert_array_equal(vol.array, a)
    np.testing.assert_allclose(vol.spacing, (0.8, 0.9, 2.5), rtol=1e-6)
    # LPS axial slices -> RAS: x and y flip sign
    np.testing.assert_allclose(np.diag(vol.affine), (-0.8, -0.9, 2.5, 1.0), rtol=1e-6)


def test_dicom_without_dicm_preamble(tmp_path: Path) -> None:
    files = write_dicom_series(tmp_path / "s", _arr((6, 6, 4)))
    files[2].write_bytes(files[2].read_bytes()[132:])  # strip preamble + 'DICM'
    with pytest.raises(CorruptFileError, match="no 'DICM' marker") as ei:
        read_volume(tmp_path / "s")
    assert files[2].name in str(ei.value)


def test_dicom_missing_slice(tmp_path: Path) -> None:
    files = write_dicom_series(tmp_path / "s", _arr((6, 6, 6)), spacing=(1, 1, 2))
    files[3].unlink()
    with pytest.raises(DicomSeriesError, match="missing slice") as ei:
        read_volume(tmp_path / "s")
    assert "about 1 slice(s) missing" in str(ei.value)


def test_dicom_duplicate_positions(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s", _arr((6, 6, 5)), positions=[0, 2, 4, 4, 6])
    with pytest.raises(DicomSeriesError, match=r"duplicate slice position 4\.000"):
        read_volume(tmp_path / "s")


def test_dicom_non_uniform_spacing(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s", _arr((6, 6, 5)), positions=[0, 2, 4, 6.5, 8.5])
    with pytest.raises(DicomSeriesError, match="non-uniform slice spacing"):
        read_volume(tmp_path / "s")
    # a looser tolerance accepts it
    DicomSeriesReader(spacing_tol=0.3).read(tmp_path / "s")


def test_dicom_two_series_in_one_folder(tmp_path: Path) -> None:
    a, b = _arr((6, 6, 4)), _arr((6, 6, 3))
    write_dicom_series(tmp_path / "s", a, series_uid="1.2.3.1", prefix="a", description="ART")
    write_dicom_series(tmp_path / "s", b, series_uid="1.2.3.2", prefix="b", description="TUB")
    with pytest.raises(DicomSeriesError, match="2 DICOM series in one folder") as ei:
        read_volume(tmp_path / "s")
    assert "1.2.3.1" in str(ei.value) and "1.2.3.2" in str(ei.value) and "ART" in str(ei.value)
    vol = read_volume(tmp_path / "s", series_uid="1.2.3.2")
    np.testing.assert_array_equal(vol.array, b.astype(np.uint16))
    with pytest.raises(DicomSeriesError, match=r"series 9\.9 not in the folder"):
        read_volume(tmp_path / "s", series_uid="9.9")


def test_dicom_varying_rows_columns(tmp_path: Path) -> None:
    write_dicom_series(tmp_path / "s", _arr((6, 6, 3)), series_uid="1.2.7", prefix="a")
    write_dicom_series(tmp_path / "s", _arr((6, 8, 3)), series_uid="1.2.7", prefix="b",
                       positions=[6, 8, 10])
    with pytest.raises(DicomSeriesError, match="slice is 8x6 but"):
        read_volume(tmp_path / "s")


def test_dicom_empty_folder_and_placeholder(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".placeholder").write_bytes(b"")
    with pytest.raises(VolumeReadError, match="holds no files"):
        read_volume(tmp_path / "s")


def test_nifti_with_header_extension(tmp_path: Path) -> None:
    a = _arr()
    img = nib.Nifti1Image(a, np.eye(4))
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"x" * 100))
    nib.save(img, str(tmp_path / "ext.nii.gz"))
    np.testing.assert_array_equal(read_volume(tmp_path / "ext.nii.gz").array, a)


def test_dicom_multiframe_is_refused_clearly(tmp_path: Path) -> None:
    import pydicom

    (f, *_) = write_dicom_series(tmp_path / "s", _arr((6, 6, 2)))
    ds = pydicom.dcmread(f)
    ds.NumberOfFrames = 2
    ds.save_as(f)
    with pytest.raises(DicomSeriesError, match="multi-frame") as ei:
        read_volume(tmp_path / "s")
    assert "dcm2niix" in str(ei.value)


def test_dicom_varying_orientation(tmp_path: Path) -> None:
    import pydicom

    files = write_dicom_series(tmp_path / "s", _arr((6, 6, 4)))
    ds = pydicom.dcmread(files[1])
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # a coronal slice
    ds.save_as(files[1])
    with pytest.raises(DicomSeriesError, match="slice orientation") as ei:
        read_volume(tmp_path / "s")
    assert files[1].name in str(ei.value)


def test_simulated_dicom_reads_like_its_nifti_twin(make_cohort) -> None:
    """The simulator writes the same cohort as DICOM series and as NIfTI: both readers must
    give the same voxels and the same RAS affine, and the DICOM cohort validates clean."""
    from medimp.data import read_cohort, validate_cohort

    shape = (14, 12, 8)  # the same cohorts as tests/simulate/test_dicom.py (session cache)
    dcm, nii = read_cohort(make_cohort(10, shape, 5, "dicom")), read_cohort(
        make_cohort(10, shape, 5, "nifti"))
    for pid, exam in dcm.exam_keys()[:3]:
        for phase in dcm.phases_of(pid, exam):
            a, b = dcm.read_volume(pid, exam, phase), nii.read_volume(pid, exam, phase)
            assert a.path.is_dir() and a.shape == b.shape == shape
            np.testing.assert_array_equal(a.array, b.array)
            np.testing.assert_allclose(a.affine, b.affine, atol=1e-3)
    assert validate_cohort(dcm.root).ok
