"""Sentence templates with named ``{slots}``: parsing, checking, filling.

A template is one sentence per text variable, e.g. ``"The kidney donor was {age} years of age."``.
Its slots are the variable's own slot and optionally ``{date}`` (the exam's date phrase). Filled
prompts are checked so that none can ever hold ``nan``, ``None``, ``False``, an unfilled slot or
a double space (the original MEDIMP prompts said "at the False check-up").
"""

from __future__ import annotations

import re
import string
from collections import Counter

from medimp.prompts.errors import PromptError, TemplateError
from medimp.study import Study, TextVariable

__all__ = [
    "DATE_SLOT",
    "check_prompt",
    "check_template",
    "fill_template",
    "known_slots",
    "normalise_space",
    "template_slots",
]

DATE_SLOT = "date"

_FORMATTER = string.Formatter()
# words a correct prompt never holds: what str() makes of a missing value or a failed lookup
_FORBIDDEN = re.compile(r"\b(?:[Nn][Aa][Nn]|None|False|True|NaT|<NA>|null)\b|<NA>")
_SLOT_LEFT = re.compile(r"\{[^{}]*\}")


def template_slots(template: str) -> list[str]:
    """Slot names of ``template`` in order of appearance (repeats kept).

    Raises:
        TemplateError: unbalanced braces, positional ``{}`` slots, or format specs.
    """
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise TemplateError(f"template {template!r}: malformed braces ({exc})") from exc
    slots = []
    for _literal, field, spec, conv in parts:
        if field is None:
            continue
        if not field.isidentifier():
            raise TemplateError(
                f"template {template!r}: slot {{{field}}} is not a name; use e.g. {{gfr}}"
            )
        if spec or conv:
            raise TemplateError(f"template {template!r}: slot {{{field}}} has a format spec")
        slots.append(field)
    return slots


def known_slots(study: Study) -> dict[str, str | None]:
    """Slot name -> variable name (``date`` -> None) for every slot the study defines."""
    out: dict[str, str | None] = {DATE_SLOT: None}
    for var in study.variables:
        if var.slot == DATE_SLOT:
            raise TemplateError(
                f"variable {var.name!r}: slot name 'date' is reserved for the exam's date phrase"
            )
        if var.slot in out:
            raise TemplateError(
                f"variables {out[var.slot]!r} and {var.name!r} share the slot {{{var.slot}}}; "
                "give each variable its own slot in study.yaml"
            )
        out[var.slot] = var.name
    return out


def check_template(template: str, var: TextVariable, where: str = "") -> None:
    """Check that ``template`` fits ``var``: its own slot exactly once, ``{date}`` at most once,
    no other slot.

    Raises:
        TemplateError: naming ``where`` (file and line), the template and the fix.
    """
    prefix = f"{where}: " if where else ""
    slots = Counter(template_slots(template))
    unknown = sorted(set(slots) - {var.slot, DATE_SLOT})
    if unknown:
        raise TemplateError(
            f"{prefix}template {template!r} of variable {var.name!r} has unknown slot(s) "
            f"{', '.join('{' + s + '}' for s in unknown)}; allowed: {{{var.slot}}} and {{date}}"
        )
    if slots[var.slot] != 1:
        raise TemplateError(
            f"{prefix}template {template!r} of variable {var.name!r} must hold {{{var.slot}}} "
            f"exactly once (found {slots[var.slot]})"
        )
    if slots[DATE_SLOT] > 1:
        raise TemplateError(f"{prefix}template {template!r} repeats {{date}}")


def normalise_space(text: str) -> str:
    """Collapse runs of whitespace and remove spaces before punctuation."""
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([.,;:!?])", r"\1", text)


def fill_template(template: str, values: dict[str, str]) -> str:
    """Fill every slot of ``template`` from ``values``; whitespace is normalised.

    Raises:
        TemplateError: a slot has no value, or a value is empty or not a string.
    """
    for slot in template_slots(template):
        val = values.get(slot)
        if not isinstance(val, str) or not val.strip():
            raise TemplateError(f"template {template!r}: no words for slot {{{slot}}} "
                                f"(got {val!r})")
    return normalise_space(template.format_map(values))


def check_prompt(prompt: str, where: str = "") -> str:
    """Return ``prompt`` unchanged if it is clean, else raise ``PromptError`` naming ``where``.

    Clean: no ``nan``/``None``/``False``/``True``/``NaT``/``null`` word, no ``{slot}`` left, no
    double space, no leading or trailing space.
    """
    prefix = f"{where}: " if where else ""
    bad = _FORBIDDEN.search(prompt)
    if bad:
        raise PromptError(f"{prefix}prompt holds {bad.group(0)!r}, a missing or wrong value: "
                          f"{prompt!r}")
    if _SLOT_LEFT.search(prompt) or "{" in prompt or "}" in prompt:
        raise PromptError(f"{prefix}prompt holds an unfilled slot: {prompt!r}")
    if "  " in prompt or prompt != prompt.strip():
        raise PromptError(f"{prefix}prompt has stray spaces: {prompt!r}")
    return prompt
