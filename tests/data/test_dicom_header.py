"""One DICOM header helper (medimp.data.io.dicom_header) for the reader and the checks: enhanced
multi-frame geometry, RescaleSlope 0 refused, rescale through pydicom, times through
pydicom.valuerep (midnight, time zones), pixels read one time point at a time. Every file is
written for real with pydicom."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimp.data import read_volume
from medimp.data._errors import DicomSeriesError
from medimp.data.cohort._geometry_checks import header_geometry
from medimp.data.io.dicom_header import clock_seconds, unwrap_midnight
from medimp.data.io.geometry import field_of_view, world_spacing
from medimp.data.io.readers import read_series
from tests.data._dynamic_helpers import TIMES, make_classic_dicom_cohort, make_enhanced_dicom_cohort
from tests.data.conftest import write_dicom_series


@pytest.fixture(scope="module")
def dicom_cohort(make_cohort) -> Path:
    return make_cohort(10, (16, 16, 16), 0, "dicom")


def _dce(root: Path) -> Path:
    return next(p for p in (root / "images").rglob("dce") if p.is_dir())


def test_enhanced_file_geometry_is_read_by_the_checks(dicom_cohort: Path, tmp_path: Path) -> None:
    """The checks used to read the top-level PixelSpacing, absent from an enhanced file, and
    skipped it silently (and counted the file as one slice)."""
    root = make_enhanced_dicom_cohort(dicom_cohort, tmp_path / "e", max_dynamic=1)
    folder = _dce(root)
    assert len(list(folder.iterdir())) == 1  # one multi-frame file holds the whole series
    geo = header_geometry(folder)
    assert geo is not None
    series = read_series(folder)
    assert geo["shape"] == list(series.array.shape[:3]) == [16, 16, 16]
    np.testing.assert_allclose(geo["spacing_ras"], world_spacing(series.affine))
    np.testing.assert_allclose(geo["fov_mm"], field_of_view(series.affine, geo["shape"]))
    # the same geometry as the classic 3D series it was built from
    pid, exam = folder.parts[-3], folder.parts[-2]
    classic = header_geometry(dicom_cohort / "images" / pid / exam / "pre")
    assert classic == geo
    # the field-of-view check before pretraining sees the file (it was skipped silently)
    from medimp.data import PreprocessConfig, read_cohort
    from medimp.data.pipeline._preflight import preflight_exams

    cohort = read_cohort(root)
    assert cohort.is_dynamic(pid, exam)
    wide = PreprocessConfig(spacing=(60.0, 60.0, 60.0), shape=(16, 16, 16))
    report = preflight_exams(cohort, wide, [(pid, exam)], tmp_path / "cache")
    assert not report.errors
    assert [w.patient for w in report.warnings] == [pid]
    assert "fill less than 10%" in report.warnings[0].problem


def test_classic_dynamic_series_counts_positions_not_files(dicom_cohort: Path,
                                                           tmp_path: Path) -> None:
    root = make_classic_dicom_cohort(dicom_cohort, tmp_path / "c", max_dynamic=1)
    folder = _dce(root)
    assert len(list(folder.iterdir())) == 16 * len(TIMES)
    assert header_geometry(folder)["shape"] == [16, 16, 16]


def _set(files: list[Path], **attrs: object) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f)


def test_rescale_slope_zero_is_refused_naming_the_file(tmp_path: Path) -> None:
    arr = np.random.default_rng(0).integers(0, 1000, (8, 8, 5)).astype(np.float32)
    files = write_dicom_series(tmp_path / "s", arr)
    _set(files[2:3], RescaleSlope=0)
    with pytest.raises(DicomSeriesError, match="RescaleSlope is 0") as info:
        read_volume(tmp_path / "s")
    assert Path(info.value.file) == files[2] and "RescaleSlope" in info.value.fix
    # the checks (validate's header geometry) do not pretend to know it either
    assert header_geometry(tmp_path / "s") is None


def test_rescale_slope_zero_in_an_enhanced_frame_is_refused(dicom_cohort: Path,
                                                            tmp_path: Path) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    folder = _dce(make_enhanced_dicom_cohort(dicom_cohort, tmp_path / "e", max_dynamic=1))
    f = next(folder.iterdir())
    ds = pydicom.dcmread(f)
    item = Dataset()
    item.RescaleSlope, item.RescaleIntercept = 0, 5
    ds.PerFrameFunctionalGroupsSequence[7].PixelValueTransformationSequence = Sequence([item])
    ds.save_as(f)
    with pytest.raises(DicomSeriesError, match=r"RescaleSlope is 0 in enhanced\.dcm frame 8"):
        read_series(folder)


def test_rescale_is_pydicoms_modality_transform(dicom_cohort: Path, tmp_path: Path) -> None:
    """Slope and intercept of each file applied as pydicom applies them, per file."""
    from pydicom.pixels import apply_rescale

    folder = _dce(make_classic_dicom_cohort(dicom_cohort, tmp_path / "c", max_dynamic=1))
    plain = read_series(folder)
    files = sorted(folder.iterdir())
    _set(files, RescaleSlope=2.5, RescaleIntercept=-1024)
    got = read_series(folder)
    np.testing.assert_allclose(got.array, plain.array * 2.5 - 1024, rtol=1e-6)
    ds = pydicom.dcmread(files[0])
    want = apply_rescale(ds.pixel_array, ds).T.astype(np.float32)
    k = [round(float(p), 2) for p in ds.ImagePositionPatient][2]
    t = int(ds.TemporalPositionIdentifier) - 1
    zs = sorted({round(float(pydicom.dcmread(f, stop_before_pixels=True)
                             .ImagePositionPatient[2]), 2) for f in files})
    np.testing.assert_array_equal(got.array[:, :, zs.index(k), t], want)


def _shift_clock(files: list[Path], start: str, date: str | None = None) -> None:
    """Move each file's AcquisitionTime so that the series starts at ``start`` (HHMMSS) on
    ``date``, keeping the intervals; with ``date`` the AcquisitionDate turns at midnight."""
    import datetime as dt

    t0 = min(clock_seconds(pydicom.dcmread(f, stop_before_pixels=True).AcquisitionTime)
             for f in files)
    begin = dt.datetime.strptime((date or "20240101") + start, "%Y%m%d%H%M%S")
    for f in files:
        ds = pydicom.dcmread(f)
        moment = begin + dt.timedelta(seconds=clock_seconds(ds.AcquisitionTime) - t0)
        ds.AcquisitionTime = moment.strftime("%H%M%S.%f")
        if date is not None:
            ds.AcquisitionDate = moment.strftime("%Y%m%d")
        ds.save_as(f)


@pytest.mark.parametrize("with_date", [False, True])
def test_a_series_crossing_midnight_keeps_its_order_and_times(
        dicom_cohort: Path, tmp_path: Path, with_date: bool) -> None:
    """Ordered and timed by AcquisitionTime only (no TemporalPositionIdentifier, no
    TriggerTime): 23:58:30 + 0..240 s crosses midnight after frame 5."""
    root = make_classic_dicom_cohort(dicom_cohort, tmp_path / "c", max_dynamic=1,
                                     order="AcquisitionTime")
    folder = _dce(root)
    before = read_series(folder)
    np.testing.assert_allclose(before.times, TIMES, atol=1e-3)
    _shift_clock(sorted(folder.iterdir()), "235830", "20241231" if with_date else None)
    after = read_series(folder)
    assert after.time_source == "AcquisitionTime of the DICOM headers"
    np.testing.assert_allclose(after.times, TIMES, atol=1e-3)
    np.testing.assert_array_equal(after.array, before.array)  # same frames, same order


def test_clock_values_through_pydicom() -> None:
    assert clock_seconds("235959.5") == pytest.approx(86399.5)
    assert clock_seconds("0130") == 5400.0  # TM may stop after the minutes
    assert clock_seconds("000010", "20240102") - clock_seconds("235950", "20240101") == 20.0
    # DT with time-zone offsets: 23:59:50 at UTC+1 is 22:59:50 UTC
    assert clock_seconds("20240101235950+0100") == clock_seconds("20240101225950+0000")
    assert clock_seconds("2024-01-01T23:59:50") - clock_seconds("20240101235940") == 10.0
    assert clock_seconds("23:59:50.25") == pytest.approx(86390.25)  # a sidecar's ISO time
    np.testing.assert_allclose(unwrap_midnight(np.array([86390.0, 86395.0, 5.0, 20.0])),
                               [86390, 86395, 86405, 86420])
    with pytest.raises(ValueError):
        clock_seconds("25h")


def test_sidecar_times_crossing_midnight(tmp_path: Path) -> None:
    import json

    import nibabel as nib

    path = tmp_path / "dce.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)), path)
    (tmp_path / "dce.json").write_text(json.dumps(
        {"AcquisitionTime": ["23:59:50.0", "00:00:05.0", "00:00:20.5"]}))
    np.testing.assert_allclose(read_series(path).times, [0.0, 15.0, 30.5])


def test_pixels_are_read_one_time_point_at_a_time(tmp_path: Path) -> None:
    """Peak memory of reading a classic dynamic series (6 time points of 6 slices of 128²):
    the float32 result and about one file, not every file's dataset and pixels at once (the
    old reader held both, over twice the result)."""
    from pydicom.uid import generate_uid

    folder, uid = tmp_path / "dce", generate_uid()
    rng = np.random.default_rng(0)
    for t in range(6):
        files = write_dicom_series(folder, rng.integers(0, 4000, (128, 128, 6)).astype(float),
                                   series_uid=uid, prefix=f"t{t}_")
        _set(files, TemporalPositionIdentifier=t + 1, TriggerTime=10_000.0 * t)
    read_series(folder)  # imports, plugin discovery
    tracemalloc.start()
    try:
        series = read_series(folder)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert series.array.shape == (128, 128, 6, 6)
    np.testing.assert_allclose(series.times, [0, 10, 20, 30, 40, 50])
    assert peak < 1.5 * series.array.nbytes, (peak, series.array.nbytes)


def test_enhanced_and_classic_copies_read_alike(dicom_cohort: Path, tmp_path: Path) -> None:
    a = read_series(_dce(make_classic_dicom_cohort(dicom_cohort, tmp_path / "c", max_dynamic=1)))
    b = read_series(_dce(make_enhanced_dicom_cohort(dicom_cohort, tmp_path / "e",
                                                    max_dynamic=1)))
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)
    shutil.rmtree(tmp_path / "c")


@pytest.mark.parametrize(("attrs", "what"), [
    ({"PixelSpacing": [0.7]}, "PixelSpacing"),
    ({"PixelSpacing": [0.0, 0.0]}, "PixelSpacing"),
    ({"ImagePositionPatient": [0.0, 0.0]}, "ImagePositionPatient"),
    ({"ImageOrientationPatient": [1.0, 0.0, 0.0, 0.0, 1.0]}, "ImageOrientationPatient"),
])
def test_a_malformed_geometry_vector_is_one_clear_error(tmp_path: Path, attrs: dict,
                                                        what: str) -> None:
    """A one-value PixelSpacing used to crash the header checks (IndexError out of pretrain's
    preflight, which never raises on bad data), a two-value position gave the reader a bare
    numpy error, and a 0 mm or 5-value header was read as 1 mm / identity without a word."""
    arr = np.random.default_rng(0).integers(0, 1000, (8, 8, 5)).astype(np.float32)
    files = write_dicom_series(tmp_path / "s", arr)
    _set(files[1:2], **attrs)
    assert header_geometry(tmp_path / "s") is None  # the image checks name it
    with pytest.raises(DicomSeriesError, match=f"{what} is .* in {files[1].name}") as info:
        read_volume(tmp_path / "s")
    assert Path(info.value.file) == files[1]


def test_a_series_crossing_midnight_under_one_acquisition_date(dicom_cohort: Path,
                                                                tmp_path: Path) -> None:
    """Scanners that stamp every image with the series' AcquisitionDate: the times of day turn
    at midnight, the date does not. Read with the date, the frames after midnight came a day
    early, first in the series (silently the wrong phases)."""
    root = make_classic_dicom_cohort(dicom_cohort, tmp_path / "c", max_dynamic=1,
                                     order="AcquisitionTime")
    folder = _dce(root)
    before = read_series(folder)
    files = sorted(folder.iterdir())
    _shift_clock(files, "235830")
    _set(files, AcquisitionDate="20241231")
    after = read_series(folder)
    np.testing.assert_allclose(after.times, TIMES, atol=1e-3)
    np.testing.assert_array_equal(after.array, before.array)
