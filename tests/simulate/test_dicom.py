"""`fmt="dicom"`: valid MR series readable by pydicom and SimpleITK, same geometry as NIfTI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk

from medimp.simulate import simulate_cohort

SHAPE = (14, 12, 8)


def read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    assert len(files) == SHAPE[2]
    reader.SetFileNames(files)
    return reader.Execute()


def test_dicom_series_match_nifti(make_cohort) -> None:
    dcm, nii = make_cohort(10, SHAPE, 5, "dicom"), make_cohort(10, SHAPE, 5, "nifti")
    m_dcm = pd.read_csv(dcm / "manifest.csv", dtype={"patient_id": str})
    m_nii = pd.read_csv(nii / "manifest.csv", dtype={"patient_id": str})
    assert m_dcm.drop(columns="path").equals(m_nii.drop(columns="path"))
    for p_dcm, p_nii in list(zip(m_dcm["path"], m_nii["path"], strict=True))[:9]:
        assert (dcm / p_dcm).is_dir()
        series = read_series(dcm / p_dcm)
        ref = sitk.ReadImage(str(nii / p_nii))  # ITK's reading of our NIfTI affine
        assert series.GetSize() == ref.GetSize() == SHAPE
        np.testing.assert_allclose(series.GetSpacing(), ref.GetSpacing(), rtol=1e-5)
        np.testing.assert_allclose(series.GetOrigin(), ref.GetOrigin(), atol=1e-3)
        np.testing.assert_allclose(series.GetDirection(), ref.GetDirection(), atol=1e-6)
        data = np.asarray(nib.load(nii / p_nii).dataobj)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(series).transpose(2, 1, 0), data)


def test_dicom_headers_are_consistent(make_cohort) -> None:
    root = make_cohort(10, SHAPE, 5, "dicom")
    exam = root / "images" / "P0001" / "D15"
    series_uids, frames = set(), set()
    for phase_dir in sorted(p for p in exam.iterdir() if p.is_dir()):
        headers = [pydicom.dcmread(f) for f in sorted(phase_dir.glob("*.dcm"))]
        assert len(headers) == SHAPE[2]
        first = headers[0]
        assert first.Modality == "MR" and first.SOPClassUID == pydicom.uid.MRImageStorage
        assert first.pixel_array.shape == (SHAPE[1], SHAPE[0])
        assert {h.SeriesInstanceUID for h in headers} == {first.SeriesInstanceUID}
        assert len({h.SOPInstanceUID for h in headers}) == SHAPE[2]
        assert first.SeriesDescription == phase_dir.name
        z = [float(h.ImagePositionPatient[2]) for h in headers]
        np.testing.assert_allclose(np.diff(z), float(first.SliceThickness), rtol=1e-6)
        assert all(list(h.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0] for h in headers)
        assert {tuple(h.PixelSpacing) for h in headers} == {tuple(first.PixelSpacing)}
        assert "StudyDate" not in first or first.StudyDate == ""
        series_uids.add(first.SeriesInstanceUID)
        frames.add(first.FrameOfReferenceUID)
    assert len(series_uids) >= 2 and len(frames) == 1  # phases share one frame of reference


def test_dicom_is_deterministic(tmp_path: Path, make_cohort) -> None:
    again = simulate_cohort(tmp_path / "again", 10, shape=SHAPE, seed=5, fmt="dicom",
                            workers=1, progress=False)
    first = make_cohort(10, SHAPE, 5, "dicom")
    for f in sorted((first / "images" / "P0002").rglob("*.dcm")):
        g = again / f.relative_to(first)
        assert hashlib.sha256(f.read_bytes()).digest() == hashlib.sha256(g.read_bytes()).digest()
