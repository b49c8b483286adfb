"""Typed errors and problem records of the data stage.

Every error names what a user needs to find and fix the problem: the file, the patient, the
exam, the phase, and what to do. They all inherit :class:`medimp.errors.MedimpError` (a
``ValueError``), which the command line catches once and prints as one line.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Literal

from medimp.errors import MedimpError

__all__ = [
    "CacheDirError",
    "CohortError",
    "CorruptFileError",
    "DicomSeriesError",
    "ImportMappingError",
    "InvalidVolumeError",
    "MedimpDataError",
    "Problem",
    "VolumeReadError",
]

Severity = Literal["error", "warning", "info"]


def _where(
    file: str | None, patient: str | None, exam: str | None, phase: str | None
) -> str:
    parts = []
    if file:
        parts.append(str(file))
    who = []
    if patient:
        who.append(f"patient {patient}")
    if exam:
        who.append(f"exam {exam}")
    if phase:
        who.append(f"phase {phase}")
    if who:
        parts.append(" ".join(who))
    return ": ".join(parts)


@dataclass(frozen=True)
class Problem:
    """One finding about a cohort: where it is, what is wrong, and how to fix it.

    ``severity`` is ``"error"`` (the cohort cannot be used as is), ``"warning"`` (usable, but
    the user should know) or ``"info"`` (a note, e.g. from the importer).
    """

    severity: Severity
    file: str | None = None
    patient: str | None = None
    exam: str | None = None
    phase: str | None = None
    problem: str = ""
    fix: str = ""

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-serialisable mapping of the fields."""
        return asdict(self)

    def __str__(self) -> str:
        where = _where(self.file, self.patient, self.exam, self.phase)
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text} (fix: {self.fix})" if self.fix else text


class MedimpDataError(MedimpError):
    """Base of every data-stage error; the message names file, patient, exam, phase and fix."""

    def __init__(
        self,
        message: str,
        *,
        file: str | os.PathLike[str] | None = None,
        patient: str | None = None,
        exam: str | None = None,
        phase: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.patient = patient
        self.exam = exam
        self.phase = phase
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = _where(self.file, self.patient, self.exam, self.phase)
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}; fix: {self.fix}" if self.fix else text

    def with_context(
        self, *, patient: str | None = None, exam: str | None = None, phase: str | None = None
    ) -> MedimpDataError:
        """Fill in patient/exam/phase (when not yet known) and refresh the message."""
        self.patient = self.patient or patient
        self.exam = self.exam or exam
        self.phase = self.phase or phase
        self.args = (self._render(),)
        return self

    def to_problem(self, severity: Severity = "error") -> Problem:
        """This error as a :class:`Problem` row (for validation reports)."""
        return Problem(severity, self.file, self.patient, self.exam, self.phase,
                       self.message, self.fix or "")


class CacheDirError(MedimpDataError):
    """The preprocessing cache folder cannot be written (never a problem of the images)."""


class VolumeReadError(MedimpDataError):
    """An image could not be read (missing, unknown format, unreadable)."""


class CorruptFileError(VolumeReadError):
    """The file is damaged: truncated, not gzip though named .gz, no DICM preamble..."""


class InvalidVolumeError(MedimpDataError):
    """The file was read but its content is unusable: NaN/Inf, singular affine, 4D, dims."""


class DicomSeriesError(VolumeReadError):
    """A DICOM series folder is ambiguous or inconsistent (several series, gaps, duplicates)."""


class DynamicSeriesError(InvalidVolumeError):
    """The frames of a dynamic series cannot give the study's phases: too few frames, times
    unknown or out of order, time points of different geometry, no detectable arrival."""


class ImportMappingError(MedimpDataError):
    """``import-medimp`` found nothing it could turn into a usable cohort."""


class CohortError(MedimpDataError):
    """A cohort directory breaks its contract; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem], root: str | os.PathLike[str] | None = None):
        self.problems = list(problems)
        if len(self.problems) == 1:  # one problem, one line: it names its own file and fix
            text = str(self.problems[0])
            if root is not None and not text.startswith(str(root)):
                text = f"{root}: {text}"
            super().__init__(f"{text}; then run `medimp validate` on the cohort")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} problems in the cohort:\n{lines}",
            file=root,
            fix="correct the listed files, then run `medimp validate` on the cohort",
        )
