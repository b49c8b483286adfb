"""The one view of a cohort: :class:`Cohort` (read and checked by
:func:`medimp.data.cohort.read.read_cohort`).

Every stage reads a cohort through :class:`Cohort`, which owns the rules that must be the same
everywhere:

* the exam order (:meth:`Cohort.sort_exams`): a patient's exams by days after transplant, then
  by the study's exam order (``patient_latest`` is the last one);
* what is known at an exam (:meth:`Cohort.value_at`, :func:`leakage_reason`): a value only
  known after the exam is missing there, for prompts and clinical features alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from medimp.data._errors import CohortError, MedimpDataError, Problem
from medimp.data.cohort._tables import Collector, check_duplicates
from medimp.data.io.frames import FRAMES_COLUMN, parse_frames, select_frames
from medimp.data.io.readers import DynamicSeries, Volume, read_series, read_volume
from medimp.study import DYNAMIC_PHASE, Study, TextVariable

if TYPE_CHECKING:
    from medimp.data.io.frames import FrameSelection

__all__ = ["Cohort", "leakage_reason"]


def leakage_reason(study: Study, var: TextVariable, exam: str) -> str | None:
    """Why the value of ``var`` is not known at ``exam`` (None when it is).

    A value is not known at an exam when it is known only at follow-up, reads an outcome
    column, was measured at a later exam (``from_exam``, by the study's nominal days), or is a
    patients.csv column "known at the exam" without saying which exam measured it.
    """
    if var.known_at == "followup":
        return (f"variable {var.name!r} (column {var.column!r}) is known only at follow-up, "
                f"after exam {exam!r}")
    if var.column in study.outcomes.columns():
        return (f"variable {var.name!r} reads outcome column {var.column!r}, known only after "
                f"exam {exam!r}")
    if var.from_exam is not None:
        days = {e.name: e.days for e in study.exams}
        if days[var.from_exam] > days[exam]:
            return (f"variable {var.name!r} is measured at exam {var.from_exam!r}, later than "
                    f"exam {exam!r}")
    if var.table == "patients" and var.known_at == "exam" and var.from_exam is None:
        return (f"variable {var.name!r}: a patients.csv column 'known at the exam' needs "
                "from_exam (which exam measured it)")
    return None


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


@dataclass
class Cohort:
    """A cohort directory read into memory (images stay on disk).

    Attributes:
        root: the cohort folder.
        study: ``study.yaml``.
        manifest: one row per volume (patient_id, exam, phase, path[, acquisition_s,
            series_uid]); the tables are read once: edit a copy, not these frames.
        exams: one row per patient-exam (patient_id, exam, days_post_transplant, ...).
        patients: one row per patient (patient_id, baseline and outcome columns).
        warnings: non-fatal findings of :func:`read_cohort` (e.g. absent outcome columns).

    A manifest row whose phase is ``dynamic`` holds a whole dynamic series (4D NIfTI or
    dynamic DICOM): every phase of ``study.yaml`` is then a frame of it, chosen as
    ``study.dynamic`` says (:meth:`dynamic_selection`).
    """

    root: Path
    study: Study
    manifest: pd.DataFrame
    exams: pd.DataFrame
    patients: pd.DataFrame
    warnings: list[Problem] = field(default_factory=list)

    @cached_property
    def truth(self) -> pd.DataFrame | None:
        """``truth.csv`` (simulated cohorts only), read on first access; for ``oracle`` only."""
        path = self.root / "truth.csv"
        if not path.is_file():
            return None
        # ids are never NA-parsed (a patient named "NA"); only the empty cell is missing
        return pd.read_csv(path, dtype={"patient_id": str, "exam": str},
                           keep_default_na=False, na_values=[""])

    @classmethod
    def from_tables(cls, study: Study, exams: pd.DataFrame, patients: pd.DataFrame,
                    manifest: pd.DataFrame | None = None,
                    root: str | os.PathLike[str] = ".") -> Cohort:
        """A cohort from tables in memory (no files), e.g. for prompts of a table.

        Ids are taken as strings. Only the duplicate check of :func:`read_cohort` runs here:
        one value per patient (and exam) is what every lookup relies on.

        Raises:
            CohortError: a patient or a patient-exam has several rows.
        """
        def ids(df: pd.DataFrame) -> pd.DataFrame:
            df = df.copy()
            for c in ("patient_id", "exam"):
                if c in df.columns:
                    df[c] = df[c].astype(str)
            return df

        if manifest is None:
            manifest = pd.DataFrame(columns=["patient_id", "exam", "phase", "path"])
        exams, patients, manifest = ids(exams), ids(patients), ids(manifest)
        col = Collector()
        if {"patient_id", "exam"} <= set(exams.columns):
            check_duplicates(exams, ["patient_id", "exam"], "exams.csv", col)
        if "patient_id" in patients.columns:
            check_duplicates(patients, ["patient_id"], "patients.csv", col)
        if col.errors:
            raise CohortError(col.errors, root=root)
        return cls(root=Path(root), study=study, manifest=manifest, exams=exams,
                   patients=patients)

    # --- the exam order ------------------------------------------------------------------

    @cached_property
    def _days(self) -> dict[tuple[str, str], float]:
        """(patient_id, exam) -> days after transplant, where exams.csv gives them."""
        e = self.exams
        if "days_post_transplant" not in e.columns:
            return {}
        days = pd.to_numeric(e["days_post_transplant"], errors="coerce")
        return {(str(p), str(x)): float(d) for p, x, d in
                zip(e["patient_id"], e["exam"], days, strict=True) if math.isfinite(d)}

    def exam_day(self, patient_id: str, exam: str) -> float:
        """Days after transplant of one exam: exams.csv's ``days_post_transplant``, else the
        study's nominal day of that exam (+inf for an exam study.yaml does not list)."""
        day = self._days.get((str(patient_id), str(exam)))
        if day is not None:
            return day
        nominal = {e.name: float(e.days) for e in self.study.exams}
        return nominal.get(str(exam), math.inf)

    def exam_sort_key(self, patient_id: str, exam: str) -> tuple[float, int, str]:
        """The one exam order: days after transplant, then the study's exam order, then
        the label (for exams study.yaml does not list)."""
        names = self.study.exam_names
        rank = names.index(exam) if exam in names else len(names)
        return (self.exam_day(patient_id, exam), rank, str(exam))

    def sort_exams(self, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """(patient_id, exam) pairs by patient, then in exam order (:meth:`exam_sort_key`)."""
        pairs = [(str(p), str(e)) for p, e in keys]
        return sorted(pairs, key=lambda k: (k[0], *self.exam_sort_key(*k)))

    def exam_keys(self) -> list[tuple[str, str]]:
        """(patient_id, exam) of every exam with at least one image, by patient then in exam
        order."""
        return self.sort_exams(set(zip(self.manifest["patient_id"], self.manifest["exam"],
                                       strict=True)))

    def latest_exams(self, keys: Iterable[tuple[str, str]] | None = None) -> dict[str, str]:
        """Patient -> its latest exam (last in exam order) among ``keys`` (default: the exams
        with images); this is the ``patient_latest`` sample of embeddings and evaluation."""
        ordered = self.exam_keys() if keys is None else self.sort_exams(keys)
        return dict(ordered)  # later pairs of a patient overwrite earlier ones

    def imaged_exams(self) -> pd.DataFrame:
        """Rows of exams.csv that have at least one image, by patient then in exam order."""
        keys = self.exam_keys()
        index = self.exams.set_index(["patient_id", "exam"])
        present = [k for k in keys if k in index.index]
        rows = index.loc[present] if present else index.iloc[:0]
        return rows.reset_index()

    # --- values known at an exam ---------------------------------------------------------

    @cached_property
    def _by_patient(self) -> pd.DataFrame:
        return self.patients.set_index("patient_id")

    @cached_property
    def _by_exam(self) -> pd.DataFrame:
        return self.exams.set_index(["patient_id", "exam"])

    def _lookup(self, table: str, column: str, patient_id: str, exam: str | None) -> Any:
        if table == "patients":
            df, key = self._by_patient, str(patient_id)
        else:
            df, key = self._by_exam, (str(patient_id), str(exam))
        if column not in df.columns or key not in df.index:
            return None
        value = df.at[key, column]
        return None if _missing(value) else value

    def value_at(self, variable: TextVariable | str, patient_id: str, exam: str) -> Any:
        """The value of ``variable`` for ``patient_id`` as known at ``exam`` (None: missing).

        ``variable`` is a study.yaml text variable (or its name), or a column that study.yaml
        lists in ``baseline_columns`` (known at transplant) or ``exam_columns`` (measured at
        the exam itself). A value not known at ``exam`` (:func:`leakage_reason`; outcome
        columns) is missing there; a variable with ``from_exam`` reads that exam's row.

        Raises:
            KeyError: ``variable`` is neither a text variable nor a listed column (study.yaml
                does not say when it is known).
        """
        study = self.study
        if isinstance(variable, str):
            names = {v.name: v for v in study.variables}
            if variable in names:
                variable = names[variable]
            elif variable in study.outcomes.columns():
                return None
            elif variable in study.baseline_columns:
                return self._lookup("patients", variable, patient_id, None)
            elif variable in study.exam_columns:
                return self._lookup("exams", variable, patient_id, exam)
            else:
                raise KeyError(f"{variable!r} is not a study.yaml variable, baseline column or "
                               "exam column: study.yaml does not say when it is known")
        if leakage_reason(study, variable, str(exam)) is not None:
            return None
        return self._lookup(variable.table, variable.column, patient_id,
                            variable.from_exam or exam)

    # --- images --------------------------------------------------------------------------

    def _resolve(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    @cached_property
    def _index(self) -> dict[tuple[str, str], dict[str, tuple[str, str | None]]]:
        """(patient_id, exam) -> phase -> (path as written, series_uid or None); a dynamic
        row stands for every phase of the study."""
        m = self.manifest
        uids = m["series_uid"] if "series_uid" in m.columns else [None] * len(m)
        index: dict[tuple[str, str], dict[str, tuple[str, str | None]]] = {}
        for pid, exam, phase, path, uid in zip(m["patient_id"], m["exam"], m["phase"],
                                               m["path"], uids, strict=True):
            uid = uid if isinstance(uid, str) and uid else None
            entry = index.setdefault((str(pid), str(exam)), {})
            for ph in (self.study.phase_names if phase == DYNAMIC_PHASE else [str(phase)]):
                entry[ph] = (str(path), uid)
        return index

    # -- dynamic (4D) series ---------------------------------------------------------------
    @cached_property
    def _dynamic_keys(self) -> set[tuple[str, str]]:
        m = self.manifest
        rows = m[m["phase"] == DYNAMIC_PHASE]
        return {(str(p), str(e)) for p, e in zip(rows["patient_id"], rows["exam"], strict=True)}

    def is_dynamic(self, patient_id: str, exam: str) -> bool:
        """True when the exam's phases are frames of one dynamic series (phase ``dynamic``)."""
        return (str(patient_id), exam) in self._dynamic_keys

    def read_dynamic(self, patient_id: str, exam: str,
                     check_finite: bool = True) -> tuple[DynamicSeries, FrameSelection]:
        """Read the dynamic series of one exam and choose its phases' frames (the last
        series read is kept in memory, so reading its phases one by one reads it once).

        Raises:
            MedimpDataError: unreadable series or a timing problem (``DynamicSeriesError``),
                with the patient and exam filled in.
        """

        key = (str(patient_id), exam)
        path, uid = next(iter(self._index[key].values()))
        memo_key = (self._resolve(path), uid, check_finite, key)
        memo = self.__dict__.setdefault("_series_memo", {})
        if memo_key not in memo:
            try:
                series = read_series(memo_key[0], series_uid=uid, check_finite=check_finite)
                selection = select_frames(series, self.study, self.own_frames(*key))
            except MedimpDataError as exc:
                raise exc.with_context(patient=key[0], exam=exam) from None
            memo.clear()
            memo[memo_key] = (series, selection)
        return memo[memo_key]

    def own_frames(self, patient_id: str, exam: str) -> dict[str, int] | None:
        """A dynamic exam's own frames (manifest.csv's optional ``frames`` column, e.g.
        ``pre:0 arterial:6 tubular:20``), None when study.yaml's ``dynamic:`` decides."""

        m = self.manifest
        if FRAMES_COLUMN not in m.columns:
            return None
        rows = m[(m["patient_id"] == str(patient_id)) & (m["exam"] == exam)
                 & (m["phase"] == DYNAMIC_PHASE)]
        text = rows[FRAMES_COLUMN].iloc[0] if len(rows) else None
        return parse_frames(text, self.study.phase_names) if isinstance(text, str) and \
            text.strip() else None

    def dynamic_selection(self, patient_id: str, exam: str) -> FrameSelection | None:
        """The frames chosen for each phase of a dynamic exam (None for a 3D-per-phase exam)."""
        if not self.is_dynamic(patient_id, exam):
            return None
        return self.read_dynamic(patient_id, exam)[1]

    def source_extra(self, patient_id: str, exam: str, phase: str) -> tuple[Any, ...]:
        """What, besides the file's content, decides a phase's voxels (preprocessing cache
        key): the series UID, and for a dynamic exam how frames are chosen."""
        uid = self.series_uid(patient_id, exam, phase)
        if not self.is_dynamic(patient_id, exam):
            return (uid,)
        spec = self.study.dynamic.model_dump(mode="json")
        seconds = {p.name: p.seconds for p in self.study.phases}
        return (uid, DYNAMIC_PHASE, {"spec": spec, "phase_seconds": seconds,
                                     "frames": self.own_frames(patient_id, exam)})

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers: no 4D array in the pickle
        state = dict(self.__dict__)
        state.pop("_series_memo", None)
        return state

    def volumes(self, patient_id: str, exam: str) -> dict[str, Path]:
        """Phase -> absolute image path for one exam, in study phase order."""
        found = self._index.get((str(patient_id), exam), {})
        return {ph: self._resolve(found[ph][0]) for ph in self.study.phase_names if ph in found}

    def read_volume(self, patient_id: str, exam: str, phase: str,
                    check_finite: bool = True) -> Volume | None:
        """Read one volume (None when that phase is missing), honouring the optional
        ``series_uid`` column of manifest.csv for DICOM folders that hold several series."""
        entry = self._index.get((str(patient_id), exam), {}).get(phase)
        if entry is None:
            return None
        if self.is_dynamic(patient_id, exam):
            series, selection = self.read_dynamic(patient_id, exam, check_finite=check_finite)
            return series.frame(selection.frames[phase])
        try:
            return read_volume(self._resolve(entry[0]), series_uid=entry[1],
                               check_finite=check_finite)
        except MedimpDataError as exc:
            raise exc.with_context(patient=str(patient_id), exam=exam, phase=phase) from None

    def volume_path(self, patient_id: str, exam: str, phase: str) -> Path | None:
        """Absolute path of one volume, or None when that phase is missing."""
        return self.volumes(patient_id, exam).get(phase)

    def series_uid(self, patient_id: str, exam: str, phase: str) -> str | None:
        """The manifest's ``series_uid`` of one volume (None: the folder holds one series)."""
        entry = self._index.get((str(patient_id), exam), {}).get(phase)
        return entry[1] if entry else None

    def phases_of(self, patient_id: str, exam: str) -> list[str]:
        """Phases present for one exam, in study phase order."""
        return list(self.volumes(patient_id, exam))

    def exam_row(self, patient_id: str, exam: str) -> pd.Series | None:
        """The exams.csv row of one exam, or None."""
        e = self.exams
        rows = e[(e["patient_id"] == str(patient_id)) & (e["exam"] == exam)]
        return None if rows.empty else rows.iloc[0]

    def patient_row(self, patient_id: str) -> pd.Series | None:
        """The patients.csv row of one patient, or None."""
        rows = self.patients[self.patients["patient_id"] == str(patient_id)]
        return None if rows.empty else rows.iloc[0]
