"""Small real files for the data-pipeline tests (kept out of conftest.py on purpose)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def write_nifti(path: Path, array: np.ndarray, spacing: float = 1.5) -> Path:
    """Write ``array`` as a NIfTI file with an isotropic RAS affine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array.astype(np.float32), np.diag([spacing] * 3 + [1.0])), path)
    return path


def kidney_phases(seed: int = 0, shape=(20, 20, 20)) -> dict[str, np.ndarray]:
    """A bright block on a noisy background, enhanced in the arterial and tubular phases."""
    rng = np.random.default_rng(seed)
    pre = 10 + 5 * rng.random(shape, dtype=np.float32)
    pre[6:14, 5:12, 7:13] += 60
    return {"pre": pre, "arterial": pre * 2.0, "tubular": pre * 1.5}


def load_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(path)
    return np.asarray(img.get_fdata(dtype=np.float32)), img.affine
