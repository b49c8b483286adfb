"""Check every image a training run will read, before its first step.

A damaged image (truncated, NaN, an absurd header, a DICOM series with a missing slice) used to
surface inside epoch 1, hours into a real run. :func:`preflight_exams` preprocesses every exam
into the preprocessing cache up front (a cache hit costs a ``stat`` and a read: a second run
pays nearly nothing), collects *every* failure with its file, patient, exam and phase, and adds
the geometry warnings of :mod:`medimp.data.cohort._geometry_checks`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medimp.data._errors import MedimpDataError, Problem
from medimp.data.cohort._geometry_checks import geometry_problems, header_geometry
from medimp.data.pipeline.cache import PreprocessCache
from medimp.data.pipeline.cache_dir import resolve_cache_dir
from medimp.data.pipeline.preprocess import PreprocessConfig, load_exam_volume

__all__ = ["PreflightReport", "preflight_exams"]


@dataclass
class PreflightReport:
    """What :func:`preflight_exams` found: ``errors`` (unusable exams) and ``warnings``."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    exams: int = 0

    def message(self, cohort_root: str | os.PathLike[str], shown: int = 5) -> str:
        """One line: how many exams failed, the first few problems, and what to do."""
        first = "; ".join(str(p) for p in self.errors[:shown])
        more = f"; and {len(self.errors) - shown} more" if len(self.errors) > shown else ""
        return (f"{len(self.errors)} of {self.exams} exam(s) cannot be read or preprocessed, "
                f"so nothing was trained: {first}{more}. `medimp validate --cohort "
                f"{cohort_root}` lists every problem with its fix")


def preflight_exams(cohort: Any, preprocess: PreprocessConfig,
                    keys: Sequence[tuple[str, str]],
                    cache_dir: str | os.PathLike[str] | None = None,
                    progress: bool = False) -> PreflightReport:
    """Read and preprocess every exam of ``keys`` into the cache; never raises on bad data.

    Args:
        cohort: a ``Cohort``.
        preprocess: the preprocessing of the run.
        keys: the (patient, exam) pairs the run will read (training and validation).
        cache_dir: the run's cache folder (None: the cohort's default cache).
        progress: show a progress bar.
    """
    report = PreflightReport(exams=len(keys))
    cache = PreprocessCache(resolve_cache_dir(cohort.root, cache_dir))
    todo: Any = list(keys)
    if progress:
        from rich.progress import track

        todo = track(todo, description="Checking and preprocessing exams")
    geos: dict[tuple[str, str], dict[str, Any]] = {}
    files: dict[tuple[str, str, str], str] = {}
    for pid, exam in todo:
        read: dict[Path, dict[str, Any] | None] = {}  # a dynamic exam's phases share one series
        for phase, path in cohort.volumes(pid, exam).items():
            if path not in read:
                read[path] = header_geometry(path)
            g = read[path]
            if g is not None:
                geos.setdefault((pid, exam), {})[phase] = g
                files[(pid, exam, phase)] = _rel(path, cohort.root)
        try:
            load_exam_volume(cohort, pid, exam, preprocess, cache=cache)
        except MedimpDataError as exc:
            p = exc.to_problem()
            report.errors.append(Problem("error", file=p.file, patient=p.patient or pid,
                                         exam=p.exam or exam, phase=p.phase,
                                         problem=p.problem, fix=p.fix))
        except (OSError, RuntimeError, ValueError) as exc:  # a library failure: still named
            report.errors.append(Problem(
                "error", patient=pid, exam=exam,
                problem=f"unreadable ({type(exc).__name__}: {exc})",
                fix="check the exam's files with `medimp validate`; export them again"))
    cache.flush()
    broken = {(p.patient, p.exam) for p in report.errors}  # their headers are not to be trusted
    geos = {k: v for k, v in geos.items() if k not in broken}
    report.warnings = geometry_problems(geos, preprocess.shape, preprocess.spacing, files)
    return report


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)
