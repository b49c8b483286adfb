"""The paraphrase bank: N variants of each variable's sentence template, with provenance.

Two file formats:

* ``gpt_augs.txt`` (the original MEDIMP format): one variant per line, the sentences of the
  variables separated by ``;``, slots ``{age}``, ``{gfr}``, ``{date}``, ``{adj}``. A sentence is
  matched to its variable by its slot, so the study decides what ``{age}`` means.
* YAML (``.yaml``/``.yml``): the same variants plus each variable's source template and the
  provenance (backend, model, date, the instruction used).

Variant ``i`` of a bank is line ``i``: prompt ``i`` of an exam uses sentence ``i`` of every
variable.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from medimp._io import atomic_write_text
from medimp.prompts.errors import BankError, TemplateError
from medimp.prompts.templates import DATE_SLOT, check_template, known_slots, template_slots
from medimp.study import Study, default_study

__all__ = ["BANK_FORMAT", "ParaphraseBank", "Provenance", "load_bank", "save_bank"]

BANK_FORMAT = "medimp-paraphrase-bank/1"


@dataclass(frozen=True)
class Provenance:
    """Where a bank came from: enough to reproduce or audit it."""

    backend: str = "unknown"
    model: str | None = None
    date: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(
        timespec="seconds"))
    instruction: str | None = None
    source_file: str | None = None


def _variable_of(part: str, study: Study, slot_to_var: dict[str, str | None], loc: str) -> str:
    """The variable whose sentence ``part`` is (its one slot), checked as a template.

    Raises:
        BankError: unknown slot, not exactly one variable slot, or a bad template.
    """
    try:
        slots = set(template_slots(part)) - {DATE_SLOT}
    except TemplateError as exc:
        raise BankError(f"{loc}: {exc}") from exc
    unknown = sorted(s for s in slots if s not in slot_to_var)
    if unknown:
        raise BankError(
            f"{loc}: unknown slot(s) {', '.join('{' + s + '}' for s in unknown)} in "
            f"{part!r}; study {study.name!r} knows "
            f"{', '.join('{' + s + '}' for s in slot_to_var)}"
        )
    if len(slots) != 1:
        raise BankError(f"{loc}: sentence {part!r} must hold exactly one variable "
                        f"slot, found {sorted(slots) or 'none'}")
    var_name = slot_to_var[slots.pop()]
    assert var_name is not None
    try:
        check_template(part, study.variable(var_name), where=loc)
    except TemplateError as exc:
        raise BankError(str(exc)) from exc
    return var_name


@dataclass
class ParaphraseBank:
    """N sentence templates per variable; variant ``i`` of every variable forms prompt ``i``.

    Attributes:
        variables: variable names in sentence order.
        slots: variable -> its slot name (``donor_age`` -> ``age``).
        sources: variable -> the template the variants paraphrase.
        templates: variable -> its N variants (same N for every variable).
        provenance: backend, model, date, instruction.
    """

    variables: list[str]
    slots: dict[str, str]
    sources: dict[str, str]
    templates: dict[str, list[str]]
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self) -> None:
        missing = [v for v in self.variables if v not in self.templates or v not in self.slots]
        if missing:
            raise BankError(f"bank lacks templates or slots for variables {missing}")
        lengths = {v: len(self.templates[v]) for v in self.variables}
        if len(set(lengths.values())) > 1:
            raise BankError(f"every variable needs the same number of variants, got {lengths}")
        if not self.variables or self.n == 0:
            raise BankError("a paraphrase bank needs at least one variable and one variant")

    @property
    def n(self) -> int:
        """Number of variants."""
        return len(self.templates[self.variables[0]])

    def line(self, i: int) -> list[str]:
        """The sentences of variant ``i``, in variable order."""
        return [self.templates[v][i] for v in self.variables]

    def lines(self) -> list[list[str]]:
        """Every variant as a list of sentences."""
        return [self.line(i) for i in range(self.n)]

    def check_fits(self, study: Study, where: str = "bank") -> None:
        """Raise ``BankError`` unless the bank has valid templates for every study variable."""
        known_slots(study)  # shared or reserved slot names are study errors
        missing = [v.name for v in study.variables if v.name not in self.templates]
        if missing:
            raise BankError(
                f"{where}: no templates for variable(s) {missing} of study {study.name!r}; "
                "make a bank for this study with `medimp prompts augment`"
            )
        for var in study.variables:
            for i, tpl in enumerate(self.templates[var.name]):
                try:
                    check_template(tpl, var, where=f"{where} variant {i}")
                except TemplateError as exc:
                    raise BankError(str(exc)) from exc

    @classmethod
    def from_lines(
        cls,
        lines: list[list[str]],
        study: Study,
        provenance: Provenance | None = None,
        where: str = "bank",
        sources: dict[str, str] | None = None,
    ) -> ParaphraseBank:
        """Build a bank from variants given as lists of sentences, matched by slot.

        Raises:
            BankError: wrong number of sentences, unknown or repeated slots (naming ``where``
                and the 1-based line).
        """
        slot_to_var = known_slots(study)
        variables: list[str] | None = None
        templates: dict[str, list[str]] = {}
        for lineno, parts in enumerate(lines, start=1):
            loc = f"{where}:{lineno}"
            if any(not p for p in parts):
                raise BankError(f"{loc}: empty sentence (a stray ';'?)")
            if variables is not None and len(parts) != len(variables):
                raise BankError(
                    f"{loc}: expected {len(variables)} sentences separated by ';', found "
                    f"{len(parts)}; every line must paraphrase the same sentences"
                )
            row: dict[str, str] = {}
            for part in parts:
                var_name = _variable_of(part, study, slot_to_var, loc)
                if var_name in row:
                    raise BankError(f"{loc}: two sentences for variable {var_name!r}")
                row[var_name] = part
            if variables is None:
                variables = list(row)
            elif set(row) != set(variables):
                raise BankError(f"{loc}: sentences for {sorted(row)}, but line 1 has "
                                f"{sorted(variables)}")
            for v, t in row.items():
                templates.setdefault(v, []).append(t)
        if variables is None:
            raise BankError(f"{where}: no variants (the file is empty)")
        slots = {v: study.variable(v).slot for v in variables}
        src = {v: study.variable(v).template for v in variables}
        src.update({k: v for k, v in (sources or {}).items() if k in src})
        return cls(variables=variables, slots=slots, sources=src, templates=templates,
                   provenance=provenance or Provenance(backend="file", source_file=where))


def load_bank(path: str | os.PathLike[str], study: Study | None = None) -> ParaphraseBank:
    """Read a bank: ``.txt`` (MEDIMP ``gpt_augs.txt``) or ``.yaml``/``.yml``.

    Args:
        path: the bank file.
        study: maps slots to variables (``{age}`` -> donor_age); default: MEDIMP's study.

    Raises:
        BankError: missing file, unknown suffix, malformed line (naming file and line).
    """
    path = Path(path)
    study = study or default_study()
    if not path.is_file():
        raise BankError(f"{path}: bank file not found")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix == ".txt":
        lines = [[p.strip() for p in ln.strip().split(";")]
                 for ln in text.splitlines() if ln.strip()]
        return ParaphraseBank.from_lines(
            lines, study, Provenance(backend="file", source_file=path.name, date=""),
            where=str(path))
    if suffix in (".yaml", ".yml"):
        return _bank_from_yaml(text, path, study)
    raise BankError(f"{path}: unknown bank format {suffix!r}; use .txt (gpt_augs) or .yaml")


def _bank_from_yaml(text: str, path: Path, study: Study) -> ParaphraseBank:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise BankError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != BANK_FORMAT:
        raise BankError(f"{path}: not a medimp paraphrase bank (expected 'format: {BANK_FORMAT}')")
    try:
        prov = Provenance(**(raw.get("provenance") or {}))
        entries = raw["variables"]
        names = [e["name"] for e in entries]
        variants = [list(map(str, e["variants"])) for e in entries]
        sources = {e["name"]: str(e.get("source") or e["variants"][0]) for e in entries}
    except (KeyError, TypeError) as exc:
        raise BankError(
            f"{path}: malformed bank ({exc!r}); each variable needs name, variants") from exc
    n = {len(v) for v in variants}
    if len(n) != 1:
        raise BankError(f"{path}: variables have different numbers of variants "
                        f"{dict(zip(names, map(len, variants), strict=True))}")
    lines = [[variants[j][i] for j in range(len(names))] for i in range(n.pop())]
    bank = ParaphraseBank.from_lines(lines, study, prov, where=str(path), sources=sources)
    bank.variables = [v for v in names if v in bank.templates]
    return bank


def bank_to_yaml(bank: ParaphraseBank) -> str:
    """The YAML text of ``bank`` (see ``save_bank``)."""
    doc = {
        "format": BANK_FORMAT,
        "provenance": {k: v for k, v in vars(bank.provenance).items() if v is not None},
        "n": bank.n,
        "variables": [
            {"name": v, "slot": bank.slots[v], "source": bank.sources.get(v),
             "variants": list(bank.templates[v])}
            for v in bank.variables
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def bank_to_txt(bank: ParaphraseBank) -> str:
    """The ``gpt_augs.txt`` text of ``bank`` (provenance is not kept in this format)."""
    return "".join(" " + "; ".join(line) + "\n" for line in bank.lines())


def save_bank(bank: ParaphraseBank, path: str | os.PathLike[str]) -> Path:
    """Write ``bank`` atomically as YAML (``.yaml``/``.yml``) or ``gpt_augs.txt`` (``.txt``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        atomic_write_text(path, bank_to_txt(bank))
    elif suffix in (".yaml", ".yml"):
        atomic_write_text(path, bank_to_yaml(bank))
    else:
        raise BankError(f"{path}: unknown bank format {suffix!r}; use .yaml or .txt")
    return path
