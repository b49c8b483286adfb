"""Reading a cohort folder: :func:`read_cohort` loads ``study.yaml`` and the three tables,
checks them and returns the one view of the cohort, :class:`medimp.data.cohort.view.Cohort`.

``read_cohort(path)`` loads ``study.yaml`` and the three tables (``manifest.csv``,
``exams.csv``, ``patients.csv``), validates every row with pydantic, checks the cross-table
references and that every manifest path exists, and raises one :class:`CohortError` listing
*every* problem found. It does not open the images: ``validate_cohort`` does.
"""

from __future__ import annotations

import os
from pathlib import Path

from medimp.data._errors import CohortError, Problem
from medimp.data.cohort._mapping import apply_dates
from medimp.data.cohort._roles import check_ranges, convert_units
from medimp.data.cohort._table_checks import (
    check_exams,
    check_labels,
    check_manifest,
    check_mapping_keys,
    check_outcome_days,
    check_patients,
    check_references,
    check_study_columns,
)
from medimp.data.cohort._tables import REQUIRED, Collector, read_table, type_table, where_of
from medimp.data.cohort._values import check_paths_inside, emit_warnings
from medimp.data.cohort.view import Cohort
from medimp.study import Study, StudyError, load_study

__all__ = ["read_cohort"]


def _load(root: str | os.PathLike[str], strict_paths: bool | None = None
          ) -> tuple[Cohort | None, list[Problem]]:
    """Read and check a cohort; return it (None when unusable) and every problem found.

    ``strict_paths`` (None: study.yaml's) refuses manifest paths leading outside the folder.
    """
    root = Path(root)
    col = Collector()
    if not root.is_dir():
        col.error("cohort folder not found", "give the folder that holds manifest.csv",
                  file=str(root))
        return None, col.problems
    study = _read_study(root, col)
    tables = {name: read_table(root / f"{name}.csv", REQUIRED[name], col, study)
              for name in ("manifest", "exams", "patients")}
    apply_dates(study, tables, col, where_of)
    for name, df in tables.items():
        if df is not None:
            type_table(df, name, study, col)
    manifest, exams, patients = tables["manifest"], tables["exams"], tables["patients"]
    if manifest is not None:
        check_manifest(root, manifest, col, study.phase_names if study else None)
    if exams is not None:
        check_exams(study, exams, col)
    if patients is not None:
        check_patients(patients, col)
    if study is not None:
        check_labels(study, manifest, exams, col)
        check_study_columns(study, exams, patients, col)
        check_ranges(study, {"exams": exams, "patients": patients}, col.report, where_of)
        convert_units(study, {"exams": exams, "patients": patients})
        check_outcome_days(study, patients, col)
        check_mapping_keys(study, tables, col)
        if manifest is not None:
            strict = study.strict_paths if strict_paths is None else strict_paths
            check_paths_inside(root, manifest, strict, col.report, where_of)
    check_references(manifest, exams, patients, col)

    if col.errors or study is None or manifest is None or exams is None or patients is None:
        return None, col.problems
    cohort = Cohort(root=root, study=study, manifest=manifest.reset_index(drop=True),
                    exams=exams.reset_index(drop=True), patients=patients.reset_index(drop=True),
                    warnings=[p for p in col.problems if p.severity != "error"])
    return cohort, col.problems


def _read_study(root: Path, col: Collector) -> Study | None:
    try:
        return load_study(root / "study.yaml")
    except StudyError as exc:
        for problem in exc.problems:  # one row per problem
            col.error(problem.replace(str(root / "study.yaml") + ": ", ""),
                      "fix study.yaml (see docs/data.md and `medimp.study.default_study()`)",
                      file="study.yaml")
        return None


def read_cohort(path: str | os.PathLike[str], strict_paths: bool | None = None) -> Cohort:
    """Read a cohort directory and check its tables, labels, references, values and paths.

    Args:
        path: the cohort folder.
        strict_paths: refuse manifest paths that lead outside the folder (None: study.yaml's
            ``strict_paths``, default False: a warning).

    Warnings (``CohortWarning``, once each): every non-fatal finding, e.g. a value outside its
    plausible range under ``out_of_range: warning``, or an image outside the cohort folder.

    Raises:
        CohortError: listing every problem found (``.problems``); run ``medimp validate``
            for the same list as a table, plus the checks that need the images.
    """
    cohort, problems = _load(path, strict_paths)
    errors = [p for p in problems if p.severity == "error"]
    if errors or cohort is None:
        raise CohortError(errors, root=path)
    emit_warnings(cohort.warnings)
    return cohort
