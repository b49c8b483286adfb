"""Dynamic DICOM series (classic one-file-per-slice and enhanced multi-frame MR), written with
pydicom by stacking the simulator's 3D DICOM phases: same tensors as the 3D series, and every
timing or geometry problem an error naming the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimp.data import read_cohort, read_volume, validate_cohort
from medimp.data._errors import DicomSeriesError, InvalidVolumeError
from medimp.data.io.readers import read_series
from medimp.data.pipeline.preprocess import PreprocessConfig, load_exam_volume
from tests.data._dynamic_helpers import (
    EXPECTED_FRAMES,
    TIMES,
    make_classic_dicom_cohort,
    make_enhanced_dicom_cohort,
)

PRE = PreprocessConfig(shape=(16, 16, 16))
KINDS = {
    "classic": (make_classic_dicom_cohort, {}, "TriggerTime of the DICOM headers"),
    "classic_trigger": (make_classic_dicom_cohort, {"order": "TriggerTime"},
                        "TriggerTime of the DICOM headers"),
    "classic_acquisition": (make_classic_dicom_cohort, {"order": "AcquisitionTime"},
                            "AcquisitionTime of the DICOM headers"),
    "enhanced": (make_enhanced_dicom_cohort, {},
                 "TemporalPositionTimeOffset of the DICOM headers"),
}


@pytest.fixture(scope="module")
def dicom_cohort(make_cohort) -> Path:
    return make_cohort(10, (16, 16, 16), 0, "dicom")


@pytest.fixture(scope="module")
def classic(dicom_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_classic_dicom_cohort(dicom_cohort, tmp_path_factory.mktemp("cl") / "c",
                                     max_dynamic=1)


def _series_folder(root: Path) -> Path:
    return next(p for p in (root / "images").rglob("dce") if p.is_dir())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dynamic_dicom_gives_the_same_tensors_as_the_3d_series(
        kind: str, dicom_cohort: Path, tmp_path: Path) -> None:
    make, kw, source = KINDS[kind]
    dyn = read_cohort(make(dicom_cohort, tmp_path / "c", max_dynamic=3, **kw))
    ref = read_cohort(dicom_cohort)
    assert dyn.exam_keys() == ref.exam_keys()
    dynamic = [k for k in dyn.exam_keys() if dyn.is_dynamic(*k)]
    assert len(dynamic) == 3
    for key in dynamic + [k for k in dyn.exam_keys() if k not in dynamic][:2]:
        if key in dynamic:
            sel = dyn.dynamic_selection(*key)
            assert sel.frames == EXPECTED_FRAMES and sel.time_source == source
            assert sel.n_frames == len(TIMES)
            np.testing.assert_allclose(sel.frame_times, TIMES, atol=0.6)  # AcquisitionTime
        a, ma = load_exam_volume(dyn, *key, PRE)
        b, mb = load_exam_volume(ref, *key, PRE)
        np.testing.assert_array_equal(ma, mb)
        np.testing.assert_array_equal(a, b)


def test_validate_shows_the_frames_of_a_dynamic_dicom_series(classic: Path) -> None:
    report = validate_cohort(classic)
    assert report.ok, report.errors
    [(_, d)] = report.summary["dynamic"].items()
    assert d["frames"] == EXPECTED_FRAMES and d["file"].endswith("/dce")
    assert d["times"] == {"pre": 20.0, "arterial": 50.0, "tubular": 210.0}


def _damaged(classic: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "dce"
    shutil.copytree(_series_folder(classic), folder)
    return folder


def _files_at(folder: Path, t: int) -> list[Path]:
    return sorted(folder.glob(f"*_{t:02d}_*.dcm"))


def _edit(files: list[Path], **attrs: object) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            if v is None:
                delattr(ds, k)
            else:
                setattr(ds, k, v)
        ds.save_as(f)


def test_a_time_point_with_another_orientation_is_an_error(classic: Path,
                                                           tmp_path: Path) -> None:
    folder = _damaged(classic, tmp_path)
    _edit(_files_at(folder, 4)[:1], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(InvalidVolumeError, match=r"time points of different geometry: .* has "
                                                 r"orientation") as exc:
        read_series(folder)
    assert str(folder) in str(exc.value) and "fix:" in str(exc.value)


def test_a_shifted_time_point_is_an_error(classic: Path, tmp_path: Path) -> None:
    folder = _damaged(classic, tmp_path)
    for f in _files_at(folder, 7):
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [float(x) + (3.0 if i == 2 else 0.0)
                                   for i, x in enumerate(ds.ImagePositionPatient)]
        ds.save_as(f)
    with pytest.raises(InvalidVolumeError, match="different geometry: slice position"):
        read_series(folder)


def test_a_missing_file_is_an_error_naming_the_position(classic: Path, tmp_path: Path) -> None:
    folder = _damaged(classic, tmp_path)
    _files_at(folder, 5)[3].unlink()
    with pytest.raises(InvalidVolumeError, match=r"holds 12 time point\(s\) .* the others "
                                                 r"hold 13"):
        read_series(folder)


def test_truncated_pixel_data_names_the_file(classic: Path, tmp_path: Path) -> None:
    """Only the pixel data of a classic file is parsed once its header is known: a file cut
    inside its pixels is still an error naming that file (pydicom's reason with it)."""
    from medimp.data._errors import CorruptFileError

    folder = _damaged(classic, tmp_path)
    bad = _files_at(folder, 9)[2]
    data = bad.read_bytes()
    bad.write_bytes(data[:-100])  # the header whole, the pixels cut short
    with pytest.raises(CorruptFileError, match="pixel data unreadable") as exc:
        read_series(folder)
    assert str(bad) in str(exc.value) and "fix:" in str(exc.value)


def test_non_monotonic_trigger_times_are_an_error(classic: Path, tmp_path: Path) -> None:
    folder = _damaged(classic, tmp_path)
    _edit(_files_at(folder, 6), TriggerTime=5000.0)  # frame 6 earlier than frame 5
    with pytest.raises(InvalidVolumeError, match="not increasing: frame 5 at 50 s, frame 6 at"):
        read_series(folder)


def test_no_timing_tags_is_an_error(classic: Path, tmp_path: Path) -> None:
    folder = _damaged(classic, tmp_path)
    _edit(sorted(folder.glob("*.dcm")), TemporalPositionIdentifier=None, TriggerTime=None,
          AcquisitionTime=None)
    with pytest.raises(InvalidVolumeError, match="no TemporalPositionIdentifier, TriggerTime"):
        read_series(folder)


def test_dynamic_folder_listed_as_one_phase_says_write_dynamic(classic: Path,
                                                               dicom_cohort: Path,
                                                               tmp_path: Path) -> None:
    with pytest.raises(DicomSeriesError, match="duplicate slice position") as exc:
        read_volume(_series_folder(classic))
    assert "'dynamic' in the phase column" in str(exc.value)
    enhanced = make_enhanced_dicom_cohort(dicom_cohort, tmp_path / "e", max_dynamic=1)
    with pytest.raises(InvalidVolumeError, match="dynamic series of 13 time points"):
        read_volume(_series_folder(enhanced))


def test_enhanced_file_of_one_time_point_reads_as_a_3d_volume(dicom_cohort: Path,
                                                              tmp_path: Path) -> None:
    from tests.data import _dynamic_helpers as h

    root = make_enhanced_dicom_cohort(dicom_cohort, tmp_path / "e", max_dynamic=1)
    f = next(_series_folder(root).glob("*.dcm"))
    ds = pydicom.dcmread(f)
    per_t = ds.NumberOfFrames // len(h.SCHEDULE)
    ds.PerFrameFunctionalGroupsSequence = ds.PerFrameFunctionalGroupsSequence[:per_t]
    ds.NumberOfFrames = per_t
    ds.PixelData = ds.PixelData[: per_t * ds.Rows * ds.Columns * 2]
    ds.save_as(f)
    ref = read_cohort(dicom_cohort)
    pid, exam = next(k for k in ref.exam_keys() if len(ref.phases_of(*k)) == 3)
    vol = read_volume(f.parent)
    want = ref.read_volume(pid, exam, "pre")
    np.testing.assert_array_equal(vol.array, want.array)
    np.testing.assert_allclose(vol.affine, want.affine, atol=1e-6)


def test_signed_pixels_through_a_modality_lut(tmp_path: Path) -> None:
    """Implicit-VR files of signed pixels with a Modality LUT whose first mapped value is
    negative: the LUT descriptor's signedness comes from PixelRepresentation, so the series
    reads as each file's own ``apply_modality_lut`` gives (it read 63488 for -2048 once)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import apply_modality_lut
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    folder = tmp_path / "lut"
    folder.mkdir()
    uid, n = generate_uid(), 0
    for t in range(2):
        for k in range(4):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, \
                meta.MediaStorageSOPInstanceUID
            ds.SeriesInstanceUID, ds.Modality = uid, "MR"
            ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(k)], \
                [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.Rows, ds.Columns = [1, 1], 8, 8
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
            ds.TemporalPositionIdentifier, ds.TriggerTime = t + 1, 1000.0 * t
            item = Dataset()
            item.add_new(0x00283002, "SS", [4096, -2048, 16])  # LUTDescriptor
            item.add_new(0x00283006, "OW", (np.arange(4096, dtype="<u2") * 2).tobytes())
            item.ModalityLUTType = "HU"
            ds.ModalityLUTSequence = [item]
            ds.PixelData = (np.arange(64, dtype=np.int16).reshape(8, 8) - 32 + 100 * k
                            + 10 * t).tobytes()
            n += 1
            ds.save_as(folder / f"f{n:03d}.dcm", enforce_file_format=True, implicit_vr=True,
                       little_endian=True)
    series = read_series(folder)
    first = pydicom.dcmread(folder / "f001.dcm")  # t 0, k 0
    want = apply_modality_lut(first.pixel_array, first).T.astype(np.float32)
    np.testing.assert_array_equal(series.array[:, :, 0, 0], want)
    assert series.array.min() > 4000  # every value mapped through the LUT, none overflowed
