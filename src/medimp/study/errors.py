"""The error of the study stage: ``study.yaml`` cannot be used."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = ["StudyError"]


class StudyError(MedimpError):
    """``study.yaml`` is missing, unreadable or inconsistent; ``problems`` lists each problem
    (``loc: message``) when there are several."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]
