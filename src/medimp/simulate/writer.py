"""Write a simulated cohort directory: tables, study.yaml, images, truth and figures.

The clinical tables are drawn once for the whole cohort (:func:`simulate_clinical`); images are
made per patient, in parallel, each patient with its own seed spawned from the cohort seed
(``numpy.random.SeedSequence``), so the output does not depend on the number of workers. All
files go to a temporary folder beside ``out`` that is renamed to ``out`` only when complete.
"""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medimp._io import atomic_dir, atomic_write_bytes, atomic_write_text, refuse_foreign_entries
from medimp.simulate.anatomy import draw_patient_geometry, exam_anatomy
from medimp.simulate.clinical import simulate_clinical
from medimp.simulate.errors import SimulationError
from medimp.simulate.kinetics import exam_kinetics
from medimp.simulate.signal import phase_volumes
from medimp.simulate.site import SiteProfile, site_profile
from medimp.study import default_study, save_study

__all__ = ["MIN_PATIENTS", "SimulationError", "nifti_affine", "simulate_cohort"]

#: Fewer patients than this rarely gives both classes of every outcome.
MIN_PATIENTS = 10
FORMATS = ("nifti", "dicom")
_MISSING_PHASE_P = 0.02
_N_FIGURE_PATIENTS = 3


@dataclass(frozen=True)
class _ExamTask:
    exam: str
    gfr: float
    volume_ml: float
    extraction: float
    fibrosis: float
    phases_present: tuple[bool, ...]


@dataclass(frozen=True)
class _PatientTask:
    index: int
    patient_id: str
    seed: np.random.SeedSequence
    shape: tuple[int, int, int]
    fmt: str
    root: Path
    phases: tuple[str, ...]
    phase_seconds: tuple[float, ...]
    exams: tuple[_ExamTask, ...]
    uid_root: str
    keep_figures: bool
    site: SiteProfile


@dataclass
class _PatientResult:
    index: int
    manifest: list[dict] = field(default_factory=list)
    curves: list[dict] = field(default_factory=list)  # only for figure patients
    slices: dict[str, np.ndarray] = field(default_factory=dict)  # "exam/phase" -> 2D slice


def nifti_affine(spacing: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """RAS affine of a volume stored in DICOM (LPS) order, centred on the scanner origin.

    Voxel (i, j, k) sits at LPS ``o + (i·sx, j·sy, k·sz)``; RAS flips the first two axes.
    """
    sp = np.asarray(spacing, dtype=float)
    origin_lps = -(np.asarray(shape) - 1) / 2 * sp
    aff = np.eye(4)
    aff[:3, :3] = np.diag(sp * np.array([-1, -1, 1]))
    aff[:3, 3] = origin_lps * np.array([-1, -1, 1])
    return aff


def _nifti_bytes(data: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    # gzip with a fixed mtime and no file name: the same volume gives the same bytes
    return gzip.compress(img.to_bytes(), compresslevel=1, mtime=0)


def _simulate_patient(task: _PatientTask) -> _PatientResult:
    rng = np.random.default_rng(task.seed)
    site = task.site
    geom = draw_patient_geometry(rng, site.fov_inplane_mm, site.fov_slice_mm)
    res = _PatientResult(index=task.index)
    pid = task.patient_id
    for ex in task.exams:
        anat = exam_anatomy(geom, task.shape, ex.volume_ml, ex.fibrosis, rng)
        times = []
        for name, nominal in zip(task.phases, task.phase_seconds, strict=True):
            jit = site.phase_jitter_s.get(name, 0.05 * nominal)
            times.append(round(max(nominal + rng.normal(0, jit), 0.0), 1) if nominal > 0 else 0.0)
        kin = exam_kinetics(ex.gfr, ex.volume_ml, ex.extraction, ex.fibrosis, phase_times=times,
                            rng=rng)
        vols, _ = phase_volumes(anat.fractions, kin.phase_signal, rng, site)
        affine = nifti_affine(anat.spacing, task.shape)
        for p, name in enumerate(task.phases):
            if not ex.phases_present[p]:
                continue
            if task.fmt == "nifti":
                rel = Path("images") / pid / ex.exam / f"{name}.nii.gz"
                atomic_write_bytes(task.root / rel, _nifti_bytes(vols[p], affine))
            else:
                from medimp.simulate.dicom import write_dicom_series

                rel = Path("images") / pid / ex.exam / name
                write_dicom_series(task.root / rel, vols[p], anat.spacing, uid_root=task.uid_root,
                                   patient_id=pid, exam=ex.exam, phase=name,
                                   series_number=p + 1, acquisition_s=times[p])
            res.manifest.append({"patient_id": pid, "exam": ex.exam, "phase": name,
                                 "path": rel.as_posix(), "acquisition_s": times[p]})
            if task.keep_figures:
                res.slices[f"{ex.exam}/{name}"] = vols[p][:, :, task.shape[2] // 2].copy()
        mask_rel = Path("truth") / "masks" / f"{pid}_{ex.exam}.nii.gz"
        atomic_write_bytes(task.root / mask_rel, _nifti_bytes(anat.labels, affine))
        if task.keep_figures:
            step = max(1, int(2.0 / (kin.times[1] - kin.times[0])))
            res.curves.append({"patient_id": pid, "exam": ex.exam, "gfr": ex.gfr,
                               "t": kin.times[::step],
                               **{k: v[::step] for k, v in kin.conc.items()},
                               "phase_times": times})
    return res


# What a simulated cohort folder holds (and what later stages add to it): ``--overwrite``
# replaces only a folder made of these, never one holding the user's own files.
COHORT_ENTRIES = frozenset({"manifest.csv", "exams.csv", "patients.csv", "study.yaml", "images",
                            "truth", "truth.csv", "figures", ".medimp_cache"})


def _site_study(site: SiteProfile):
    """study.yaml of a site's cohort: the default study, with the site's nominal phase times."""
    study = default_study()
    if site.site == 0:
        return study
    phases = [p.model_copy(update={"seconds": site.phase_seconds.get(p.name, p.seconds)})
              for p in study.phases]
    return study.model_copy(update={"name": f"medimp-simulated-site-{site.site}",
                                    "phases": phases})


def _check_args(out: Path, n_patients: int, shape: tuple[int, ...], *, fmt: str,
                overwrite: bool, workers: int | None, site: int = 0) -> None:
    if int(site) != site or site < 0:
        raise SimulationError(f"--site must be an integer >= 0 (0: the default site), got {site}")
    if int(n_patients) != n_patients or n_patients < MIN_PATIENTS:
        raise SimulationError(f"--patients must be an integer >= {MIN_PATIENTS} so that both "
                              f"outcome classes occur (got {n_patients})")
    if len(shape) != 3 or any(int(s) != s or s < 8 for s in shape):
        raise SimulationError(f"--shape needs three integers >= 8 (D H W), got {tuple(shape)}")
    if fmt not in FORMATS:
        raise SimulationError(f"--format must be one of {FORMATS}, got {fmt!r}")
    if workers is not None and workers < 1:
        raise SimulationError(f"--workers must be >= 1, got {workers}")
    if out.exists() and not out.is_dir():
        raise SimulationError(f"{out} exists and is not a folder; choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SimulationError(f"{out} is not empty; pass --overwrite to replace it or choose "
                              "another OUT")
    if overwrite:
        refuse_foreign_entries(out, COHORT_ENTRIES, what="simulated cohort",
                               error=SimulationError)
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SimulationError(f"cannot create {out}: {parent} is a file; choose another OUT")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SimulationError(f"cannot write in {parent}: permission denied; choose another OUT")


def _tasks(root: Path, patients: pd.DataFrame, truth: pd.DataFrame, *,
           shape: tuple[int, int, int], fmt: str, seed: int,
           site: SiteProfile) -> list[_PatientTask]:
    study = _site_study(site)
    phases = tuple(study.phase_names)
    seconds = tuple(float(p.seconds or 0.0) for p in study.phases)
    children = np.random.SeedSequence([seed, 0x1A6E]).spawn(len(patients))
    miss_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A5E]))
    uid_root = f"medimp-simulate-seed-{seed}" + (f"-site-{site.site}" if site.site else "")
    by_patient = dict(list(truth.groupby("patient_id", sort=False)))
    tasks = []
    for i, pid in enumerate(patients["patient_id"]):
        exams = []
        for row in by_patient.get(pid, pd.DataFrame()).itertuples(index=False):
            present = [True] * len(phases)
            if len(phases) > 1 and miss_rng.random() < _MISSING_PHASE_P:
                present[int(miss_rng.integers(1, len(phases)))] = False  # never the pre phase
            exams.append(_ExamTask(row.exam, float(row.gfr_true), float(row.kidney_volume_ml),
                                   float(row.extraction_fraction), float(row.fibrosis_fraction),
                                   tuple(present)))
        tasks.append(_PatientTask(i, str(pid), children[i], shape, fmt, root, phases, seconds,
                                  tuple(exams), uid_root, i < _N_FIGURE_PATIENTS, site))
    return tasks


def _run(tasks: list[_PatientTask], workers: int, progress: bool) -> list[_PatientResult]:
    results: list[_PatientResult | None] = [None] * len(tasks)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("simulating patients"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), disable=not progress, transient=False) as bar:
        job = bar.add_task("simulate", total=len(tasks))
        if workers <= 1:
            for t in tasks:
                results[t.index] = _simulate_patient(t)
                bar.advance(job)
        else:
            ctx = mp.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = [pool.submit(_simulate_patient, t) for t in tasks]
                for fut in cf.as_completed(futures):
                    r = fut.result()
                    results[r.index] = r
                    bar.advance(job)
    return [r for r in results if r is not None]


def _csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def simulate_cohort(  # noqa: PLR0917 (positional order fixed by docs/ARCHITECTURE.md)
    out: str | os.PathLike[str],
    n_patients: int,
    shape: tuple[int, int, int] = (32, 32, 32),
    seed: int = 0,
    fmt: str = "nifti",
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    *,
    site: int = 0,
) -> Path:
    """Simulate a renal-transplant DCE-MRI cohort and write it as a cohort directory.

    Args:
        out: cohort folder to create (must be absent or empty unless ``overwrite``).
        n_patients: number of patients (>= ``MIN_PATIENTS``).
        shape: volume shape (D, H, W); axis 2 is the slice axis.
        seed: random seed; the same seed gives byte-identical files.
        fmt: ``"nifti"`` (``.nii.gz`` per phase) or ``"dicom"`` (a series folder per phase).
        overwrite: replace a non-empty ``out`` (only once the new cohort is complete).
        workers: processes for the images (default: up to 4, never more than the CPUs). They
            are spawned, so a script that calls this with ``workers > 1`` needs the usual
            ``if __name__ == "__main__":`` guard.
        progress: show a progress bar.
        site: acquisition profile (:func:`medimp.simulate.site.site_profile`): 0 is the
            default scanner; another number changes gain, noise, bias field, field of view and
            phase timing, never the patients (the tables are the same for the same seed).

    Returns:
        The cohort folder.

    Raises:
        SimulationError: invalid arguments; nothing is written.
    """
    out = Path(out)
    _check_args(out, n_patients, tuple(shape), fmt=fmt, overwrite=overwrite, workers=workers,
                site=site)
    profile = site_profile(int(site))
    shape = tuple(int(s) for s in shape)
    if workers is None:
        workers = max(1, min(4, os.cpu_count() or 1, n_patients // 8))
    patients, exams, truth = simulate_clinical(int(n_patients), seed)
    study = _site_study(profile)
    try:
        with atomic_dir(out, overwrite=overwrite) as root:
            tasks = _tasks(root, patients, truth, shape=shape, fmt=fmt, seed=seed,
                           site=profile)
            results = _run(tasks, workers, progress)
            manifest = pd.DataFrame([row for r in results for row in r.manifest],
                                    columns=["patient_id", "exam", "phase", "path",
                                             "acquisition_s"])
            atomic_write_text(root / "manifest.csv", _csv(manifest))
            atomic_write_text(root / "exams.csv", _csv(exams))
            atomic_write_text(root / "patients.csv", _csv(patients))
            atomic_write_text(root / "truth.csv", _csv(truth))
            save_study(study, root / "study.yaml")
            from medimp.simulate.figures import write_figures

            write_figures(root / "figures", results, study)
    except FileExistsError as exc:
        raise SimulationError(str(exc)) from exc
    return out
