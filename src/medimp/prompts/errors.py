"""Typed errors of the prompts stage (all :class:`medimp.errors.MedimpError`)."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = [
    "BackendError",
    "BankError",
    "ColumnError",
    "LeakageError",
    "NotEnoughVariantsError",
    "PrivacyError",
    "PromptError",
    "TemplateError",
]


class PromptError(MedimpError):
    """Base class: clinical values could not be turned into prompts."""


class TemplateError(PromptError):
    """A template has an unknown, missing, repeated or malformed ``{slot}``."""


class BankError(PromptError):
    """A paraphrase bank file is malformed or does not fit the study."""


class ColumnError(PromptError):
    """A column named in ``study.yaml`` is absent from its table."""


class LeakageError(PromptError):
    """A variable is only known after the exam, so it may not enter that exam's prompt."""


class PrivacyError(PromptError):
    """Text about to leave the machine holds digits or a value from the cohort tables."""


class BackendError(PromptError):
    """A paraphrasing backend (LLM endpoint, local model) failed or answered unusably."""


class NotEnoughVariantsError(PromptError):
    """Fewer valid paraphrases than requested; ``report`` says why each was rejected."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
