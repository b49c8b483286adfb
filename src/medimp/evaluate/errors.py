"""The evaluation's errors: input it cannot use, with a message that names the file, the
patient and the fix (docs/ARCHITECTURE.md, "Errors")."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = ["EvaluationError", "ProbeError"]


class EvaluationError(MedimpError):
    """Input the evaluation cannot use; the message names the file/patient and the fix."""


class ProbeError(EvaluationError):
    """The training data cannot fit a probe (e.g. too few patients of one class)."""
