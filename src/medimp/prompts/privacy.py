"""Privacy guard: nothing but slot templates leaves the machine.

Before any text is sent to a language-model endpoint, it is refused (``PrivacyError``) if it
holds a digit (ages, dates, lab values, identifiers) or any value present in the cohort tables
(patient identifiers, categorical values, …), matched as whole words, case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd

from medimp.prompts.errors import PrivacyError

__all__ = ["assert_safe_to_send", "cohort_values"]

_DIGIT = re.compile(r"\d")


def cohort_values(tables: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """Every distinct cell of ``tables`` as text -> where it comes from ("patients.csv column x").

    Numbers are covered by the digit rule, so only cells without digits are kept. Values are
    lower-cased, except one-letter values ("F", "M"), matched case-sensitively.
    """
    out: dict[str, str] = {}
    for name, df in tables.items():
        for col in df.columns:
            for val in pd.unique(df[col].dropna()):
                text = str(val).strip()
                key = text if len(text) == 1 else text.lower()
                if text and not _DIGIT.search(text) and key not in out:
                    out[key] = f"{name} column {col!r}"
    return out


def assert_safe_to_send(texts: Iterable[str], forbidden: Mapping[str, str] | None = None
                        ) -> None:
    """Raise ``PrivacyError`` if any text holds a digit or a forbidden value.

    Args:
        texts: everything about to be sent (instruction and templates).
        forbidden: value -> where it comes from (see ``cohort_values``).
    """
    forbidden = dict(forbidden or {})
    words = sorted((v for v in forbidden if len(v) > 1), key=len, reverse=True)
    letters = [v for v in forbidden if len(v) == 1]  # "F", "M": case-sensitive, or "a" matches
    rxs = []
    if words:
        rxs.append(re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)",
                              re.IGNORECASE))
    if letters:
        rxs.append(re.compile(r"(?<![\w'])(?:" + "|".join(map(re.escape, letters)) + r")(?!\w)"))
    for text in texts:
        if _DIGIT.search(text):
            raise PrivacyError(
                f"refusing to send text that holds digits: {text!r}; only templates with "
                "{slots} may leave this machine (write numbers as slots or words)"
            )
        for rx in rxs:
            m = rx.search(text)
            if m:
                where = forbidden.get(m.group(0)) or forbidden[m.group(0).lower()]
                raise PrivacyError(
                    f"refusing to send text that holds a value of the cohort tables "
                    f"({where}): {text!r}; put it in a {{slot}} instead"
                )
