"""Fixtures of the data-ingest tests: tiny hand-written cohorts and image files.

Everything is written for real (nibabel NIfTI, pydicom DICOM, CSVs) in ``tmp_path``; nothing of
medimp is mocked.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimp.study import default_study, save_study

SHAPE = (8, 8, 6)
TINY_AFFINE = np.diag([15.0, 15.0, 20.0, 1.0])


def write_nifti(path: Path, array: np.ndarray | None = None,
                affine: np.ndarray | None = None, seed: int = 0) -> Path:
    """Write a small float32 NIfTI (random positive voxels unless ``array`` is given)."""
    if array is None:
        array = np.random.default_rng(seed).uniform(10, 100, SHAPE).astype(np.float32)
    if affine is None:
        affine = np.diag([1.5, 1.5, 2.0, 1.0])
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_dicom_series(folder: Path, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 2.0),
                       positions: Sequence[float] | None = None, series_uid: str | None = None,
                       description: str = "test", prefix: str = "slice") -> list[Path]:
    """Write ``array`` (I, J, K) as one axial DICOM slice per K, uint16, with pydicom.

    ``positions`` overrides the z position (mm) of each slice, to create gaps or duplicates.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    frame_uid = generate_uid()
    n = array.shape[2]
    positions = list(positions) if positions is not None else [k * spacing[2] for k in range(n)]
    files = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.PatientID = "P001"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ContentDate = datetime.date(2023, 1, 1).strftime("%Y%m%d")
        ds.ImagePositionPatient = [0.0, 0.0, float(positions[k])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = array.shape[1]
        ds.Columns = array.shape[0]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.PixelData = np.ascontiguousarray(array[:, :, k].T.astype(np.uint16)).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files


def write_tiny_cohort(root: Path, n_patients: int = 2, exams: Sequence[str] = ("D15", "D30"),
                phases: Sequence[str] = ("pre", "arterial", "tubular"), seed: int = 0) -> Path:
    """Write a small valid cohort directory (default study, NIfTI volumes) and return it."""
    rng = np.random.default_rng(seed)
    study = default_study()
    root.mkdir(parents=True, exist_ok=True)
    save_study(study, root / "study.yaml")
    man, ex, pat = [], [], []
    days = {e.name: e.days for e in study.exams}
    for p in range(n_patients):
        pid = f"P{p + 1:03d}"
        pat.append({"patient_id": pid, "donor_age": int(rng.integers(20, 80)),
                    "donor_type": "deceased", "recipient_age": int(rng.integers(20, 70)),
                    "recipient_sex": "F", "egfr_y2": round(float(rng.uniform(20, 80)), 1),
                    "egfr_y3": "", "egfr_y4": "", "graft_loss": 0, "graft_loss_days": "",
                    "followup_days": 1500})
        for e in exams:
            ex.append({"patient_id": pid, "exam": e, "days_post_transplant": days[e],
                       "egfr": round(float(rng.uniform(10, 90)), 1),
                       "creatinine_mg_dl": 1.4, "creatinine_cv": round(float(rng.uniform(2, 30)),
                                                                       1)})
            for ph in phases:
                rel = f"images/{pid}/{e}/{ph}.nii.gz"
                # 15-20 mm voxels: few voxels, but an abdomen-sized field of view (120 mm) that
                # fills a fair share of the default preprocessing window (no geometry warning)
                write_nifti(root / rel, affine=TINY_AFFINE, seed=int(rng.integers(1 << 30)))
                man.append({"patient_id": pid, "exam": e, "phase": ph, "path": rel})
    pd.DataFrame(man).to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(ex).to_csv(root / "exams.csv", index=False)
    pd.DataFrame(pat).to_csv(root / "patients.csv", index=False)
    return root


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Path:
    """A fresh valid 2-patient cohort (2 exams x 3 phases) that a test may damage."""
    return write_tiny_cohort(tmp_path / "cohort")


@pytest.fixture
def cohort_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def _make(**kw: object) -> Path:
        return write_tiny_cohort(tmp_path / f"cohort{next(counter)}", **kw)  # type: ignore[arg-type]

    return _make


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: to check that nothing was changed or lost."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}
