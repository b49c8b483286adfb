"""Write one phase volume as an MR DICOM series (one file per slice) with consistent geometry.

The volume ``vol[i, j, k]`` is stored slice by slice along ``k``: each slice's pixel array has
``Rows = H`` (index ``j``) and ``Columns = D`` (index ``i``). The patient coordinate system is
DICOM's LPS: ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]`` (rows along +x, columns along +y),
ImagePositionPatient ``origin + k · SliceThickness · ẑ``, so that SimpleITK reads back exactly the
same geometry as the NIfTI affine of :func:`medimp.simulate.writer.nifti_affine`.

UIDs are hashed from the cohort seed, patient, exam and phase (``2.25.<128-bit number>``), and
no date or time is written: the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from medimp._io import atomic_write_bytes

__all__ = ["write_dicom_series"]


def _uid(*parts: object) -> str:
    """A "2.25." UID (ISO/IEC 9834-8: a 128-bit number) hashed from ``parts``: reproducible."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def write_dicom_series(folder: Path, vol: np.ndarray, spacing: np.ndarray, *, uid_root: str,
                       patient_id: str, exam: str, phase: str, series_number: int,
                       acquisition_s: float) -> list[Path]:
    """Write ``vol`` (non-negative integers, [D, H, W]) as ``folder/0001.dcm`` ...

    Args:
        folder: the series folder (created).
        vol: the volume; axis 2 is the slice axis.
        spacing: voxel size (mm) along the three axes.
        uid_root: seed-derived text that makes the UIDs of this cohort unique and reproducible.
        patient_id, exam, phase: written to PatientID, StudyDescription, SeriesDescription.
        series_number: SeriesNumber (the phase's position in the study).
        acquisition_s: seconds after bolus arrival (TriggerTime, in ms, and ImageComments).

    Returns:
        The files written, in slice order.
    """
    from pydicom.dataset import Dataset

    sp = [float(s) for s in spacing]
    d, h, w = vol.shape
    origin = -(np.array(vol.shape) - 1) / 2 * np.array(sp)
    uids = {"StudyInstanceUID": _uid(uid_root, patient_id, exam, "study"),
            "SeriesInstanceUID": _uid(uid_root, patient_id, exam, phase, "series"),
            "FrameOfReferenceUID": _uid(uid_root, patient_id, exam, "frame")}
    pixels = np.clip(vol, 0, 65535).astype(np.uint16)
    written = []
    for k in range(w):
        sop_uid = _uid(uid_root, patient_id, exam, phase, "slice", k)
        ds = Dataset()
        _set_identity(ds, sop_uid, uids, patient_id=patient_id, exam=exam, phase=phase,
                      series_number=series_number)
        _set_acquisition(ds, phase, acquisition_s)
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * sp[2])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [sp[1], sp[0]]  # row spacing (along j), column spacing (along i)
        ds.SliceThickness = sp[2]
        ds.SpacingBetweenSlices = sp[2]
        ds.SliceLocation = float(origin[2] + k * sp[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = h
        ds.Columns = d
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T).tobytes()
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = folder / f"{k + 1:04d}.dcm"
        atomic_write_bytes(path, buf.getvalue())
        written.append(path)
    return written


def _set_identity(ds, sop_uid: str, uids: dict[str, str], *, patient_id: str, exam: str,
                  phase: str, series_number: int) -> None:
    """File meta, UIDs, and the anonymous patient / study / series of one slice."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("medimp", "implementation")
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    for key, value in uids.items():
        setattr(ds, key, value)
    ds.Modality = "MR"
    ds.Manufacturer = "medimp simulator"
    ds.PatientName = patient_id
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate = ""
    ds.StudyTime = ""
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = exam
    ds.StudyDescription = exam
    ds.SeriesDescription = phase
    ds.SeriesNumber = int(series_number)


def _set_acquisition(ds, phase: str, acquisition_s: float) -> None:
    """The MR sequence and the contrast timing of one slice."""
    ds.AcquisitionNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "SP"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D"
    ds.RepetitionTime = 3.5
    ds.EchoTime = 1.2
    ds.FlipAngle = 15
    ds.MagneticFieldStrength = 3
    ds.ContrastBolusAgent = "gadoterate"
    ds.TriggerTime = round(float(acquisition_s) * 1000.0, 1)
    ds.ImageComments = f"{phase} phase, {acquisition_s:.1f} s after bolus arrival"
