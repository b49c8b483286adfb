"""3D anatomy of a transplanted kidney: tissue fractions on the voxel grid of one exam.

The kidney is a bean-shaped ellipsoid (a hilar notch on its medial side) with an outer cortex,
7–9 medullary pyramids pointing at the renal sinus, and a sinus (fat, vessels, pelvis) opening at
the hilum; around it perirenal fat, then soft tissue (muscle and fat mixed by a smooth random
field) and an iliac artery. Shape, size, position and orientation are drawn per patient
(:func:`draw_patient_geometry`) and perturbed slightly per exam.

Fibrosis is a set of patches fixed per patient, in the kidney's own coordinates, whose radii grow
with the fibrosis fraction: the same patches are seen to grow from exam to exam. Inside a patch
the cortico-medullary boundary is blurred (and, in :mod:`medimp.simulate.kinetics`, perfusion and
filtration are reduced).

Everything is vectorised over voxels; one exam at 48³ takes a few tens of milliseconds.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

__all__ = ["LABELS", "ExamAnatomy", "PatientGeometry", "draw_patient_geometry", "exam_anatomy"]

#: Label values of the true masks written under ``truth/masks``.
LABELS = {"background": 0, "cortex": 1, "medulla": 2, "sinus": 3}
#: Tissue classes whose fractions sum to one in every voxel (order of ``ExamAnatomy.fractions``).
TISSUES = ("cortex", "cortex_fibrotic", "medulla", "medulla_fibrotic", "sinus", "fat", "muscle",
           "blood")
_N_PATCHES = 10


@dataclass(frozen=True)
class PatientGeometry:
    """What stays the same across a patient's exams (mm, kidney-normalised coordinates)."""

    fov_mm: np.ndarray  # [3] field of view
    center_mm: np.ndarray  # [3] kidney centre relative to the volume centre
    rotation: np.ndarray  # [3, 3] kidney axes -> volume axes
    aspect: np.ndarray  # [3] relative semi-axes (long, medial, anterior)
    pyramids: np.ndarray  # [P, 3] unit directions of the pyramids
    patches: np.ndarray  # [_N_PATCHES, 3] fibrosis patch centres (normalised coordinates)
    patch_scale: np.ndarray  # [_N_PATCHES] relative patch sizes
    tissue_seed: int  # seed of the smooth fat/muscle field


@dataclass(frozen=True)
class ExamAnatomy:
    """One exam's anatomy on its voxel grid."""

    spacing: np.ndarray  # [3] mm
    labels: np.ndarray  # uint8 [D, H, W] (LABELS)
    fractions: np.ndarray  # float32 [len(TISSUES), D, H, W], sums to 1
    fibrosis: np.ndarray  # float32 [D, H, W] fibrosis weight in [0, 1]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def draw_patient_geometry(rng: np.random.Generator,
                          fov_inplane_mm: tuple[float, float] = (170.0, 210.0),
                          fov_slice_mm: tuple[float, float] = (150.0, 190.0)) -> PatientGeometry:
    """Draw the per-patient geometry: field of view, pose, shape, pyramids, fibrosis patches.

    The field of view is drawn from the site's ranges (:mod:`medimp.simulate.site`); the
    defaults are site 0's. Everything else is anatomy, the same at every site.
    """
    fov = np.array([rng.uniform(*fov_inplane_mm), rng.uniform(*fov_inplane_mm),
                    rng.uniform(*fov_slice_mm)])
    center = rng.normal(0, 8, 3)
    # long axis mostly in the slice plane (axes 0, 1), tilted by up to ~25 degrees
    rot = Rotation.from_euler("zyx", [rng.uniform(0, 360), rng.normal(0, 12),
                                      rng.normal(0, 12)], degrees=True).as_matrix()
    aspect = np.array([1.0, rng.uniform(0.50, 0.60), rng.uniform(0.42, 0.50)])
    n_pyr = int(rng.integers(7, 10))
    xs = np.linspace(-0.65, 0.65, n_pyr) + rng.normal(0, 0.04, n_pyr)
    phi = rng.uniform(-2.4, 2.4, n_pyr)  # around the long axis, away from the hilum (+y)
    pyr = _unit(np.stack([xs, -np.cos(phi) * 0.9, np.sin(phi) * 0.9], axis=1))
    patches = []
    while len(patches) < _N_PATCHES:  # inside the parenchyma, not in the sinus
        p = rng.uniform(-0.9, 0.9, 3)
        if 0.45 < np.linalg.norm(p) < 0.92 and not _in_sinus(p[:, None])[0]:
            patches.append(p)
    return PatientGeometry(
        fov_mm=fov, center_mm=center, rotation=rot, aspect=aspect, pyramids=pyr,
        patches=np.array(patches), patch_scale=rng.uniform(0.7, 1.3, _N_PATCHES),
        tissue_seed=int(rng.integers(0, 2**31 - 1)))


def _in_sinus(u: np.ndarray) -> np.ndarray:
    return (u[0] / 0.55) ** 2 + ((u[1] - 0.32) / 0.36) ** 2 + (u[2] / 0.34) ** 2 < 1.0


@functools.lru_cache(maxsize=2)
def _smooth_field(shape: tuple[int, ...], sigma_vox: tuple[float, ...], seed: int) -> np.ndarray:
    """Smooth random field with unit spread, the same for every exam of a patient."""
    g = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    f = ndimage.gaussian_filter(g, sigma_vox, mode="wrap")
    return (f - f.mean()) / max(float(f.std()), 1e-6)


def exam_anatomy(geom: PatientGeometry, shape: tuple[int, int, int], kidney_volume_ml: float,
                 fibrosis_fraction: float, rng: np.random.Generator) -> ExamAnatomy:
    """Tissue fractions and labels of one exam.

    Args:
        geom: the patient's geometry.
        shape: volume shape (D, H, W); axis 2 is the slice axis.
        kidney_volume_ml: kidney volume at this exam (sets the semi-axes).
        fibrosis_fraction: latent fibrosis at this exam (sets the patch radii).
        rng: draws the small per-exam pose change.
    """
    shape = tuple(int(s) for s in shape)
    spacing = geom.fov_mm / np.array(shape)
    semi = geom.aspect * (kidney_volume_ml * 1000 * 3 / (4 * np.pi) / geom.aspect.prod()) ** (1 / 3)
    # slight per-exam change of pose (patient positioning)
    drot = Rotation.from_rotvec(rng.normal(0, np.deg2rad(2.5), 3)).as_matrix()
    rot = drot @ geom.rotation
    center = geom.center_mm + rng.normal(0, 2.5, 3)

    axes = [(np.arange(n, dtype=np.float32) - (n - 1) / 2) * sp for n, sp in zip(shape, spacing,
                                                                              strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)  # [3, N] mm
    u = ((rot.T @ (grid - center[:, None])) / semi[:, None]).astype(np.float32)
    r = np.sqrt((u**2).sum(0))

    hilum = (u[1] > 0.40) & (u[0] ** 2 / 0.30**2 + u[2] ** 2 / 0.28**2 < 1.0)
    kidney = (r < 1.0) & ~hilum
    sinus = _in_sinus(u) & (r < 1.0)
    pyr = np.zeros(r.shape, dtype=bool)
    for d in geom.pyramids.astype(np.float32):
        rel = u - 0.52 * d[:, None]
        along = (rel * d[:, None]).sum(0)
        across2 = (rel**2).sum(0) - along**2
        pyr |= (along / 0.24) ** 2 + across2 / 0.15**2 < 1.0
    medulla = kidney & ~sinus & pyr & (r < 0.80)
    cortex = kidney & ~sinus & ~medulla
    sinus = sinus & (kidney | hilum)

    # fibrosis patches (radii so that their volume is about fibrosis_fraction of the kidney)
    rad = (0.42 * max(fibrosis_fraction, 0.0) ** (1 / 3) * geom.patch_scale).astype(np.float32)
    fib = np.zeros(r.shape, dtype=np.float32)
    for centre, rad_i in zip(geom.patches.astype(np.float32), rad, strict=True):
        dist = np.sqrt(((u - centre[:, None]) ** 2).sum(0))
        np.maximum(fib, np.clip((rad_i - dist) / 0.10 + 0.5, 0.0, 1.0), out=fib)
    fib = (fib * (cortex | medulla)).astype(np.float32)

    labels = np.zeros(r.shape, dtype=np.uint8)
    labels[cortex] = LABELS["cortex"]
    labels[medulla] = LABELS["medulla"]
    labels[sinus] = LABELS["sinus"]

    # perirenal fat shell, soft tissue elsewhere (smooth fat/muscle mix), an iliac artery
    fat_shell = (r >= 1.0) & (r < 1.30) | hilum & (r < 1.0)
    artery_c = center + rot[:, 1] * (semi[1] + 14.0)
    d_art = np.sqrt(((grid[:2] - artery_c[:2, None]) ** 2).sum(0))
    blood = (d_art < 5.0) & (r >= 1.0)
    sigma = tuple(float(x) for x in np.round(12.0 / spacing, 2))  # ~12 mm blobs
    mix = _smooth_field(shape, sigma, geom.tissue_seed).reshape(-1)
    outside = ~(kidney | sinus | fat_shell | blood)
    fat = fat_shell | outside & (mix > 0.25)
    muscle = outside & ~fat

    def vol(m: np.ndarray) -> np.ndarray:
        return m.reshape(shape).astype(np.float32)

    c, m_ = vol(cortex), vol(medulla)
    f3 = fib.reshape(shape)
    # blurred cortico-medullary differentiation inside fibrotic patches
    cm = c + m_
    c_blur = ndimage.gaussian_filter(c, 1.5) * cm
    c = (1 - 0.7 * f3) * c + 0.7 * f3 * c_blur
    m_ = cm - c
    frac = np.stack([c * (1 - f3), c * f3, m_ * (1 - f3), m_ * f3, vol(sinus), vol(fat),
                     vol(muscle), vol(blood)])
    # partial volume at tissue boundaries (about half a voxel)
    frac = ndimage.gaussian_filter(frac, sigma=(0, 0.5, 0.5, 0.5), truncate=2.0)
    frac /= np.clip(frac.sum(0, keepdims=True), 1e-6, None)
    return ExamAnatomy(spacing=spacing, labels=labels.reshape(shape),
                       fractions=frac.astype(np.float32), fibrosis=f3)
