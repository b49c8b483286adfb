"""medimp.prompts: clinical values -> words (bins) -> template sentences -> paraphrased prompts.

Public API (binding for other stages): ``build_prompts``, ``build_prompts_from_tables``,
``exam_words``, ``ParaphraseBank``, ``load_bank``, ``save_bank``, ``default_bank`` and the
``PromptError`` family. Importing this package loads no model.
"""

from medimp.prompts.bank import ParaphraseBank, Provenance, load_bank, save_bank
from medimp.prompts.build import (
    build_prompts,
    build_prompts_from_tables,
    default_bank,
    exam_words,
)
from medimp.prompts.errors import (
    BackendError,
    BankError,
    ColumnError,
    LeakageError,
    NotEnoughVariantsError,
    PrivacyError,
    PromptError,
    TemplateError,
)

__all__ = [
    "BackendError",
    "BankError",
    "ColumnError",
    "LeakageError",
    "NotEnoughVariantsError",
    "ParaphraseBank",
    "PrivacyError",
    "PromptError",
    "Provenance",
    "TemplateError",
    "build_prompts",
    "build_prompts_from_tables",
    "default_bank",
    "exam_words",
    "load_bank",
    "save_bank",
]
