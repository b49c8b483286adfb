"""pretrain reads every image it will train on before the first step: a damaged one fails at
once, named by file, patient, exam and phase, and nothing is written."""

from __future__ import annotations

import gzip
import shutil
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medimp.train import TrainError, pretrain


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".medimp_cache"))
    return dst


def _target(cohort: Path) -> dict[str, str]:
    m = pd.read_csv(cohort / "manifest.csv", dtype=str)
    return m.iloc[len(m) // 2].to_dict()  # an exam in the middle of the cohort


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan(path: Path) -> None:
    img = nib.load(str(path))
    arr = np.asarray(img.dataobj, dtype=np.float32).copy()
    arr[3, 3, 3] = np.nan
    nib.save(nib.Nifti1Image(arr, img.affine), str(path))


def _absurd_header(path: Path) -> None:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[42:44] = struct.pack("<h", 30000)  # dim[1]: 30000 voxels along the first axis
    path.write_bytes(gzip.compress(bytes(raw)))


@pytest.mark.parametrize(("damage", "expected"), [
    (_truncate, "truncated"), (_nan, "NaN"), (_absurd_header, "header")])
def test_damaged_nifti_fails_before_training(simulated_cohort, tiny_config, tmp_path, damage,
                                             expected) -> None:
    cohort = _copy(simulated_cohort, tmp_path / "cohort")
    row = _target(cohort)
    damage(cohort / row["path"])
    out = tmp_path / "run"
    with pytest.raises(TrainError) as ei:
        pretrain(cohort, out, tiny_config("method=image_ssl", "augment={}", "epochs=1"),
                 progress=False)
    msg = str(ei.value)
    assert "1 of " in msg and "nothing was trained" in msg and "medimp validate" in msg
    assert expected.lower() in msg.lower()
    assert row["path"].split("/")[-1] in msg
    assert f"patient {row['patient_id']} exam {row['exam']} phase {row['phase']}" in msg
    assert not out.exists()  # nothing written: no half run to clean up


def test_missing_dicom_slice_fails_before_training(make_cohort, tiny_config, tmp_path) -> None:
    cohort = _copy(make_cohort(10, (16, 16, 16), 0, "dicom"), tmp_path / "cohort")
    row = _target(cohort)
    slices = sorted((cohort / row["path"]).iterdir())
    slices[len(slices) // 2].unlink()
    with pytest.raises(TrainError, match=r"missing slice") as ei:
        pretrain(cohort, tmp_path / "run", tiny_config("method=image_ssl", "augment={}",
                                                       "epochs=1", "batch_size=2"),
                 progress=False)
    assert f"patient {row['patient_id']} exam {row['exam']} phase {row['phase']}" in \
        str(ei.value)
    assert not (tmp_path / "run").exists()


def test_small_field_of_view_warns_before_training(simulated_cohort, tiny_config,
                                                   tmp_path) -> None:
    """The simulated cohort's ~190 mm field of view in a 16³ x 60 mm (960 mm) window fills
    less than 1% of it: pretrain warns, once, before training."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pretrain(simulated_cohort, tmp_path / "run",
                 tiny_config("method=image_ssl", "augment={}", "epochs=1",
                             "preprocess.spacing=[60, 60, 60]"), progress=False)
    msgs = [str(w.message) for w in caught if "preprocessing window" in str(w.message)]
    assert len(msgs) == 1 and "fill less than 10%" in msgs[0]
