"""Dynamic (4D) cohorts built by stacking the simulator's 3D phases (the simulator is unchanged).

Every exam of a simulated cohort becomes one dynamic acquisition of ``len(SCHEDULE)`` frames at
``TIMES``: frames 0-2 (0-20 s) repeat the pre-contrast volume, frames 3-6 (30-60 s) the
arterial one and frames 7-12 (90-240 s) the tubular one. With the study's delays (pre 0 s,
arterial 30 s, tubular 180 s) and the arrival detected between frames 2 and 3 (20-30 s), the
chosen frames hold exactly the 3D phases of the original cohort, so both cohorts must give the
same preprocessed tensors. Exams with a
missing phase keep their 3D files (a cohort may mix both kinds of exam).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

PHASES = ("pre", "arterial", "tubular")
SCHEDULE = ["pre"] * 3 + ["arterial"] * 4 + ["tubular"] * 6
TIMES = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0]
EXPECTED_FRAMES = {"pre": 2, "arterial": 5, "tubular": 11}


def _copy_tables(src: Path, dst: Path) -> pd.DataFrame:
    dst.mkdir(parents=True)
    for name in ("exams.csv", "patients.csv", "study.yaml"):
        shutil.copy2(src / name, dst / name)
    return pd.read_csv(src / "manifest.csv", dtype=str)


def _exams(manifest: pd.DataFrame, src: Path, dst: Path, rows_out: list[dict],
           max_dynamic: int | None = None):
    """Yield (patient, exam, phase -> path) of the complete exams (the first ``max_dynamic``);
    copy the others as 3D."""
    n = 0
    for (pid, exam), rows in manifest.groupby(["patient_id", "exam"], sort=True):
        paths = dict(zip(rows["phase"], rows["path"], strict=True))
        if set(PHASES) <= set(paths) and (max_dynamic is None or n < max_dynamic):
            n += 1
            yield pid, exam, paths
            continue
        for rec in rows.to_dict("records"):
            target = dst / rec["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            if (src / rec["path"]).is_dir():
                shutil.copytree(src / rec["path"], target)
            else:
                shutil.copy2(src / rec["path"], target)
            rows_out.append({k: rec[k] for k in ("patient_id", "exam", "phase", "path")})


def make_nifti4d_cohort(src: Path, dst: Path, *, sidecar: bool = True) -> Path:
    """One 4D NIfTI (time last) per exam with a dcm2niix-style JSON sidecar."""
    manifest = _copy_tables(src, dst)
    rows: list[dict] = []
    for pid, exam, paths in _exams(manifest, src, dst, rows):
        imgs = {ph: nib.load(src / paths[ph]) for ph in PHASES}
        data = {ph: np.asarray(img.dataobj) for ph, img in imgs.items()}
        arr = np.stack([data[ph] for ph in SCHEDULE], axis=-1)
        rel = f"images/{pid}/{exam}/dce.nii.gz"
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(arr, imgs["pre"].affine)
        nib.save(img, dst / rel)
        if sidecar:
            (dst / rel.replace(".nii.gz", ".json")).write_text(json.dumps(
                {"Modality": "MR", "FrameTimesStart": TIMES}))
        rows.append({"patient_id": pid, "exam": exam, "phase": "dynamic", "path": rel})
    pd.DataFrame(rows).to_csv(dst / "manifest.csv", index=False)
    return dst


def _phase_slices(folder: Path) -> list:
    import pydicom

    return [pydicom.dcmread(f) for f in sorted(folder.iterdir())]


def make_classic_dicom_cohort(src: Path, dst: Path, *, max_dynamic: int | None = None,
                              order: str = "TemporalPositionIdentifier") -> Path:
    """One classic dynamic DICOM series per exam (one file per slice and time point, all in one
    folder and series), split back by ``order`` (the other timing tags are removed when
    ``order`` is ``TriggerTime`` or ``AcquisitionTime``)."""
    from pydicom.uid import generate_uid

    manifest = _copy_tables(src, dst)
    rows: list[dict] = []
    for pid, exam, paths in _exams(manifest, src, dst, rows, max_dynamic):
        phase_ds = {ph: _phase_slices(src / paths[ph]) for ph in PHASES}
        rel = f"images/{pid}/{exam}/dce"
        out = dst / rel
        out.mkdir(parents=True)
        series = generate_uid()
        for t, ph in enumerate(SCHEDULE):
            for k, ds in enumerate(phase_ds[ph]):
                ds = ds.copy()
                ds.SeriesInstanceUID = series
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.SeriesDescription = "DCE"
                ds.InstanceNumber = t * len(phase_ds[ph]) + k + 1
                ds.TriggerTime = TIMES[t] * 1000.0
                sec = 8 * 3600 + TIMES[t] + 0.05 * k  # slices of one time point 50 ms apart
                ds.AcquisitionTime = (f"{int(sec // 3600):02d}{int(sec % 3600 // 60):02d}"
                                      f"{sec % 60:09.6f}")
                ds.TemporalPositionIdentifier = t + 1
                ds.NumberOfTemporalPositions = len(SCHEDULE)
                if order != "TemporalPositionIdentifier":
                    del ds.TemporalPositionIdentifier
                if order == "AcquisitionTime":
                    del ds.TriggerTime
                ds.save_as(out / f"IM{(k * 31 + t * 7) % 1000:03d}_{t:02d}_{k:02d}.dcm")
        rows.append({"patient_id": pid, "exam": exam, "phase": "dynamic", "path": rel})
    pd.DataFrame(rows).to_csv(dst / "manifest.csv", index=False)
    return dst


def make_enhanced_dicom_cohort(src: Path, dst: Path, *, max_dynamic: int | None = None) -> Path:
    """One enhanced multi-frame MR file per exam: every slice of every time point a frame, with
    per-frame plane positions, temporal position indices and time offsets."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    enhanced_mr = "1.2.840.10008.5.1.4.1.1.4.1"
    manifest = _copy_tables(src, dst)
    rows: list[dict] = []
    for pid, exam, paths in _exams(manifest, src, dst, rows, max_dynamic):
        phase_ds = {ph: _phase_slices(src / paths[ph]) for ph in PHASES}
        first = phase_ds["pre"][0]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = enhanced_mr
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = enhanced_mr, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), first.StudyInstanceUID
        ds.Modality, ds.PatientID, ds.SeriesDescription = "MR", pid, "DCE enhanced"
        ds.Rows, ds.Columns = first.Rows, first.Columns
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing = first.PixelSpacing
        measures.SliceThickness = first.SliceThickness
        orient = Dataset()
        orient.ImageOrientationPatient = first.ImageOrientationPatient
        shared.PixelMeasuresSequence = Sequence([measures])
        shared.PlaneOrientationSequence = Sequence([orient])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        frames, pixels = [], []
        for t, ph in enumerate(SCHEDULE):
            for sl in reversed(phase_ds[ph]):  # slices stored top-down: the reader sorts them
                g = Dataset()
                pos = Dataset()
                pos.ImagePositionPatient = sl.ImagePositionPatient
                content = Dataset()
                content.TemporalPositionIndex = t + 1
                content.StackID = "1"
                offset = Dataset()
                offset.TemporalPositionTimeOffset = TIMES[t]
                g.PlanePositionSequence = Sequence([pos])
                g.FrameContentSequence = Sequence([content])
                g.TemporalPositionSequence = Sequence([offset])
                frames.append(g)
                pixels.append(sl.pixel_array.astype(np.uint16))
        ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
        ds.NumberOfFrames = len(frames)
        ds.PixelData = np.stack(pixels).tobytes()
        rel = f"images/{pid}/{exam}/dce"
        (dst / rel).mkdir(parents=True)
        ds.save_as(dst / rel / "enhanced.dcm", enforce_file_format=True)
        rows.append({"patient_id": pid, "exam": exam, "phase": "dynamic", "path": rel})
    pd.DataFrame(rows).to_csv(dst / "manifest.csv", index=False)
    return dst
