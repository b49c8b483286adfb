"""Prompt building: each exam's clinical values -> words -> N paraphrased prompts.

For exam E of patient P, every text variable of ``study.yaml`` gives one sentence: its value
(``medimp.data.Cohort.value_at``: from ``patients.csv`` or from the exam's row of
``exams.csv``) is binned into words and put in
the variable's template, with ``{date}`` set to the exam's phrase ("first month"). A missing
value leaves its sentence out. Prompt ``i`` uses variant ``i`` of every template of the
paraphrase bank.

Leakage guard: a variable whose value is only known after exam E (``known_at: followup``, any
outcome column, or ``from_exam`` a later exam; ``medimp.data.leakage_reason``, the rule
``tabular_clip`` and ``clinical_only`` follow too) is refused for E's prompt with
``LeakageError``.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from medimp._io import atomic_path
from medimp.data.cohort import Cohort, leakage_reason
from medimp.prompts.bank import ParaphraseBank, load_bank
from medimp.prompts.bins import value_to_word
from medimp.prompts.errors import ColumnError, LeakageError, PromptError
from medimp.prompts.paraphrase import rules_bank
from medimp.prompts.templates import DATE_SLOT, check_prompt, check_template, fill_template
from medimp.study import Study, default_study

__all__ = [
    "PROMPT_COLUMNS",
    "build_prompts",
    "build_prompts_from_tables",
    "check_columns",
    "cohort_bank",
    "default_bank",
    "exam_words",
    "explain_exam",
    "leakage_reason",
    "write_prompts",
]

log = logging.getLogger(__name__)

PROMPT_COLUMNS = ["patient_id", "exam", "variant", "prompt"]
_TABLE_FILE = {"patients": "patients.csv", "exams": "exams.csv"}


def default_bank(study: Study | None = None, n: int = 10) -> ParaphraseBank:
    """The ``rules`` backend's bank of ``n`` variants of the study's templates (offline)."""

    return rules_bank(study or default_study(), n=n)


def check_columns(study: Study, exams_df: pd.DataFrame, patients_df: pd.DataFrame) -> None:
    """Raise ``ColumnError`` if a column that ``study.yaml`` names is absent from its table."""
    tables = {"patients": patients_df, "exams": exams_df}
    for name, df in tables.items():
        if "patient_id" not in df.columns:
            raise ColumnError(f"{_TABLE_FILE[name]}: no 'patient_id' column")
    if "exam" not in exams_df.columns:
        raise ColumnError("exams.csv: no 'exam' column")
    for var in study.variables:
        df = tables[var.table]
        if var.column not in df.columns:
            raise ColumnError(
                f"{_TABLE_FILE[var.table]}: column {var.column!r} of variable {var.name!r} "
                f"(study.yaml) is absent; columns are {list(df.columns)}; fix study.yaml or "
                "the table"
            )


def _cohort_of(study: Study, exams_df: pd.DataFrame, patients_df: pd.DataFrame) -> Cohort:
    """Tables given in memory as a :class:`medimp.data.Cohort` (a read cohort is used as is)."""
    check_columns(study, exams_df, patients_df)
    return Cohort.from_tables(study, exams_df, patients_df)


def _exam_spec(study: Study, patient_id: str, exam: str):
    try:
        return study.exam(exam)
    except KeyError:
        raise PromptError(
            f"patient {patient_id} exam {exam!r}: this exam is not in study.yaml exams "
            f"{study.exam_names}; rename it in the tables (e.g. J15 -> D15) or add it to "
            "study.yaml"
        ) from None


def _values(cohort: Cohort, patient_id: str, exam: str, on_leak: str = "error"
            ) -> dict[str, object]:
    """Variable -> raw table value allowed in this exam's prompt (None: missing or dropped)."""
    study = cohort.study
    _exam_spec(study, patient_id, exam)
    out: dict[str, object] = {}
    for var in study.variables:
        reason = leakage_reason(study, var, exam)
        if reason is not None:
            if on_leak == "error":
                raise LeakageError(f"patient {patient_id} exam {exam}: {reason}; it may not "
                                   "enter this exam's prompt (remove it from study.yaml or "
                                   "fix known_at/from_exam)")
            out[var.name] = None
            continue
        out[var.name] = cohort.value_at(var, patient_id, exam)
    return out


def _words(cohort: Cohort, patient_id: str, exam: str, rng: np.random.Generator | None,
           on_leak: str = "error", *, values: dict[str, object] | None = None
           ) -> dict[str, str | None]:
    values = values if values is not None else _values(cohort, patient_id, exam, on_leak)
    where = f"patient {patient_id} exam {exam}"
    return {var.name: value_to_word(var, values[var.name], rng=rng, where=where)
            for var in cohort.study.variables}


def exam_words(study_or_cohort, *args) -> dict[str, str | None]:
    """Variable -> words (bin label) or None (missing) for one exam.

    Call as ``exam_words(study, exams_df, patients_df, patient_id, exam)`` or
    ``exam_words(cohort, patient_id, exam)`` with a ``medimp.data.Cohort``.

    Raises:
        LeakageError: a variable is only known after this exam.
        ColumnError: a column named in study.yaml is absent.
        PromptError: unknown exam, value that cannot be binned.
    """
    if isinstance(study_or_cohort, Cohort) and len(args) == 2:
        cohort = study_or_cohort
        patient_id, exam = args
    elif len(args) == 4:
        exams_df, patients_df, patient_id, exam = args
        cohort = _cohort_of(study_or_cohort, exams_df, patients_df)
    else:
        raise TypeError("exam_words(study, exams_df, patients_df, patient_id, exam) or "
                        "exam_words(cohort, patient_id, exam)")
    return _words(cohort, str(patient_id), str(exam), rng=None)


def _resolve_bank(study: Study, bank: ParaphraseBank | str | os.PathLike[str] | None
                  ) -> ParaphraseBank:
    if bank is None:
        bank = default_bank(study)
    elif not isinstance(bank, ParaphraseBank):
        bank = load_bank(bank, study)
    bank.check_fits(study)
    return bank


def _rng(seed: int, patient_id: str, exam: str) -> np.random.Generator:
    """One generator per exam, so one exam's prompts do not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(patient_id.encode()),
                                  zlib.crc32(exam.encode())])


def build_prompts_from_tables(
    study: Study,
    exams_df: pd.DataFrame,
    patients_df: pd.DataFrame,
    bank: ParaphraseBank | str | os.PathLike[str] | None = None,
    seed: int = 0,
    *,
    keys: Iterable[tuple[str, str]] | None = None,
    on_leak: Literal["error", "drop"] = "error",
) -> pd.DataFrame:
    """All N paraphrased prompts of every exam.

    Args:
        study: the cohort's study.yaml.
        exams_df: exams.csv (patient_id, exam, the exam variables' columns).
        patients_df: patients.csv (patient_id, the baseline variables' columns).
        bank: a ``ParaphraseBank``, a bank file, or None for ``default_bank(study)``.
        seed: draws the synonyms of labels (``synonyms`` in study.yaml).
        keys: (patient_id, exam) pairs to build (default: every row of exams.csv); an exam
            without a row in exams.csv gets only its patient-level sentences.
        on_leak: ``"error"`` (default) raises ``LeakageError``; ``"drop"`` leaves the sentence
            out for the exams it would leak into.

    Returns:
        DataFrame with columns patient_id (str), exam (str), variant (int), prompt (str); an
        exam whose every value is missing has no rows (logged as a warning).
    """
    for var in study.variables:
        check_template(var.template, var, where="study.yaml")
    bank = _resolve_bank(study, bank)
    cohort = _cohort_of(study, exams_df, patients_df)
    if keys is None:
        keys = zip(cohort.exams["patient_id"], cohort.exams["exam"], strict=True)
    return _build(cohort, bank, seed, keys, on_leak)


def _build(cohort: Cohort, bank: ParaphraseBank, seed: int,
           keys: Iterable[tuple[str, str]], on_leak: Literal["error", "drop"] = "error"
           ) -> pd.DataFrame:
    """The prompts of ``keys`` (see :func:`build_prompts_from_tables`)."""
    study = cohort.study
    rows: list[tuple[str, str, int, str]] = []
    empty = []
    for patient_id, exam in [(str(p), str(e)) for p, e in keys]:
        where = f"patient {patient_id} exam {exam}"
        phrase = _exam_spec(study, patient_id, exam).phrase
        rng = _rng(seed, patient_id, exam)
        values = _values(cohort, patient_id, exam, on_leak)
        for i in range(bank.n):
            words = _words(cohort, patient_id, exam, rng, values=values)
            sentences = []
            for var in study.variables:
                word = words[var.name]
                if word is None:
                    continue
                tpl = bank.templates[var.name][i]
                sentences.append(fill_template(tpl, {var.slot: word, DATE_SLOT: phrase}))
            if not sentences:
                empty.append(where)
                break
            rows.append((patient_id, exam, i, check_prompt(" ".join(sentences), where)))
    if empty:
        log.warning("%d exam(s) have no known value and get no prompt: %s", len(empty),
                    ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else ""))
    df = pd.DataFrame(rows, columns=PROMPT_COLUMNS)
    return df.astype({"patient_id": str, "exam": str, "variant": "int64", "prompt": str})


#: Bank files a cohort directory may carry (``medimp import-medimp --augs`` writes the second).
COHORT_BANKS = ("prompts/bank.yaml", "prompts/gpt_augs.txt")


def cohort_bank(cohort) -> Path | None:
    """The cohort's own paraphrase bank (``prompts/bank.yaml`` or ``prompts/gpt_augs.txt``)."""
    root = getattr(cohort, "root", None)
    if root is None:
        return None
    for name in COHORT_BANKS:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def build_prompts(cohort, bank: ParaphraseBank | str | os.PathLike[str] | None = None,
                  seed: int = 0) -> pd.DataFrame:
    """All N paraphrased prompts of every exam of ``cohort`` that has an image.

    Args:
        cohort: a ``medimp.data.Cohort`` (``.study``, ``.exams``, ``.patients``,
            ``.exam_keys()``, ``.root``).
        bank: a ``ParaphraseBank`` or a bank file; None: the cohort's own bank
            (``prompts/bank.yaml`` or ``prompts/gpt_augs.txt``) if it has one, else
            ``default_bank(cohort.study)``.
        seed: draws the synonyms of labels.
    """
    if bank is None:
        bank = cohort_bank(cohort)
        if bank is not None:
            log.info("using the cohort's paraphrase bank %s", bank)
    for var in cohort.study.variables:
        check_template(var.template, var, where="study.yaml")
    return _build(cohort, _resolve_bank(cohort.study, bank), seed, cohort.exam_keys())


def write_prompts(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a prompts table as parquet, atomically."""

    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def explain_exam(
    study: Study,
    exams_df: pd.DataFrame,
    patients_df: pd.DataFrame,
    patient_id: str,
    exam: str,
    *,
    bank: ParaphraseBank | str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> tuple[list[tuple[str, str, object, str | None]], list[str]]:
    """One exam's table row and its prompts, e.g. for ``medimp prompts show``.

    Returns:
        ([(variable, "table.column", raw value, words or None)], [prompt of each variant]).
    """
    cohort = _cohort_of(study, exams_df, patients_df)
    patient_id, exam = str(patient_id), str(exam)
    words = _words(cohort, patient_id, exam, rng=None)
    rows = [(v.name, f"{_TABLE_FILE[v.table]}:{v.column}", cohort.value_at(v, patient_id, exam),
             words[v.name]) for v in study.variables]
    df = build_prompts_from_tables(study, exams_df, patients_df, bank=bank, seed=seed,
                                   keys=[(patient_id, exam)])
    return rows, df["prompt"].tolist()
