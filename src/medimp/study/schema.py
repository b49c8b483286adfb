"""The ``study.yaml`` schema: the pydantic models of what the columns of a cohort mean.

``Study`` and its parts: the exams (label, nominal day after transplant, the phrase used in
prompts), the contrast phases (label, nominal seconds after the bolus), how the phases of a
dynamic series are chosen, the text variables (which table and column, when the value is
known, how it becomes words), the outcome columns and the "poor graft status" threshold, and
the plausible range of each numeric column. Reading and writing the file is
:mod:`medimp.study.files`; MEDIMP's defaults are :mod:`medimp.study.defaults`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from medimp._units import QUANTITIES, normalise_unit

__all__ = [
    "DEFAULT_RANGES",
    "DYNAMIC_PHASE",
    "Bin",
    "DateColumns",
    "DynamicSpec",
    "ExamSpec",
    "Outcomes",
    "PhaseSpec",
    "Range",
    "Study",
    "TextVariable",
]


# The manifest.csv phase of a row that holds a whole dynamic (4D) series.
DYNAMIC_PHASE = "dynamic"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bin(_Strict):
    """One numeric bin: values ``< upper`` (and >= the previous bin's upper) get ``label``.

    The last bin of a variable has ``upper: null`` (+infinity).
    """

    label: str
    upper: float | None = None


class ExamSpec(_Strict):
    """A follow-up exam: its label in the tables, its nominal day, its phrase in prompts."""

    name: str
    days: int = Field(ge=0, description="Nominal days after transplant.")
    phrase: str = Field(description="Words for the {date} slot, e.g. 'first month'.")


class PhaseSpec(_Strict):
    """A contrast phase of the DCE acquisition."""

    name: str
    seconds: float | None = Field(None, description="Nominal time after bolus arrival (s).")


class DynamicSpec(_Strict):
    """How the phases of a dynamic (4D) series are chosen (manifest rows with phase
    ``dynamic``).

    * ``select: index``: ``frames`` gives each phase's frame (0 = the first frame).
    * ``select: time``: each phase is the frame nearest ``arrival_s + phase.seconds``, with
      ``arrival_s`` the contrast arrival in seconds after the first frame (a fixed protocol).
    * ``select: auto`` (default): the arrival is detected on the curve of mean intensity over
      ``region`` (the whole volume, or a box given as fractions of each axis, e.g. around the
      aorta or a kidney): the first time the curve rises above ``threshold`` of its peak
      enhancement over the baseline (the mean of the first ``baseline_frames`` frames). A phase
      with ``seconds <= 0`` (pre-contrast) is the last frame before ``arrival + seconds``; the
      others the frame nearest ``arrival + seconds`` (the delays of ``phases``).
    """

    select: Literal["auto", "time", "index"] = "auto"
    frames: dict[str, int] | None = Field(
        None, description="select: index — phase name -> frame index (0-based).")
    arrival_s: float | None = Field(
        None, description="select: time — contrast arrival, seconds after the first frame.")
    region: list[tuple[float, float]] | None = Field(
        None, description="select: auto — box of the arrival curve as [[lo, hi]] fractions "
        "(0-1) of axes i, j, k of the file's voxel grid; null = the whole volume.")
    baseline_frames: int = Field(
        2, ge=1, description="Frames at the start that are surely before the arrival.")
    threshold: float = Field(
        0.2, gt=0, lt=1, description="Arrival = first crossing of baseline + threshold x "
        "(peak - baseline).")
    min_enhancement: float = Field(
        0.05, ge=0, description="The peak must exceed the baseline by this fraction of the "
        "baseline level, or no arrival is detectable (an error).")
    tolerance_s: float | None = Field(
        None, ge=0, description="A phase time may miss its nearest frame by at most this; "
        "null = the median frame interval.")

    @field_validator("region")
    @classmethod
    def _box(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is not None and (len(v) != 3 or any(not 0 <= lo < hi <= 1 for lo, hi in v)):
            raise ValueError(f"dynamic.region must be 3 [lo, hi] fractions with 0 <= lo < hi "
                             f"<= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _needs(self) -> DynamicSpec:
        if self.select == "index" and not self.frames:
            raise ValueError("dynamic.select: index needs 'frames' (phase -> frame index)")
        if self.select == "time" and self.arrival_s is None:
            raise ValueError("dynamic.select: time needs 'arrival_s' (contrast arrival, seconds "
                             "after the first frame); or use select: auto to detect it")
        if self.frames and any(f < 0 for f in self.frames.values()):
            raise ValueError(f"dynamic.frames must be >= 0, got {self.frames}")
        return self


class TextVariable(_Strict):
    """A clinical value that becomes a sentence of the prompt."""

    name: str
    table: Literal["patients", "exams"]
    column: str
    known_at: Literal["transplant", "exam", "followup"] = Field(
        description="'transplant': a baseline value; 'exam': measured at the exam itself; "
        "'followup': only known after the exams (never allowed in a prompt)."
    )
    from_exam: str | None = Field(
        None,
        description="The exam at which the value was measured, when it is not the prompt's own "
        "exam (e.g. a wide-table column 'GFR D15', or the D15 row of exams.csv): the variable "
        "is then refused in the prompts of earlier exams.",
    )
    kind: Literal["numeric", "categorical"] = "numeric"
    bins: list[Bin] | None = None
    categories: dict[str, str] | None = Field(
        None, description="Categorical value (as written in the table) -> words."
    )
    synonyms: dict[str, list[str]] = Field(
        default_factory=dict, description="Label -> alternative words drawn at random."
    )
    slot: str = Field(description="Slot name in the template, e.g. 'gfr' for {gfr}.")
    template: str = Field(description="One sentence with {slot} (and optionally {date}).")

    @model_validator(mode="after")
    def _check(self) -> TextVariable:
        if self.kind == "numeric":
            if not self.bins:
                raise ValueError(f"variable {self.name!r}: numeric variables need 'bins'")
            uppers = [b.upper for b in self.bins]
            if uppers[-1] is not None:
                raise ValueError(f"variable {self.name!r}: the last bin needs upper: null")
            finite = list(uppers[:-1])
            if any(u is None for u in finite):
                raise ValueError(f"variable {self.name!r}: only the last bin may be open")
            if any(not math.isfinite(u) for u in finite) or finite != sorted(set(finite)):
                raise ValueError(
                    f"variable {self.name!r}: bin upper bounds must be finite and strictly "
                    f"increasing (got {finite}); fix the bins so they neither overlap nor repeat"
                )
        elif not self.categories:
            raise ValueError(f"variable {self.name!r}: categorical variables need 'categories'")
        if "{" + self.slot + "}" not in self.template:
            raise ValueError(
                f"variable {self.name!r}: template {self.template!r} lacks its slot {{{self.slot}}}"
            )
        return self


class Outcomes(_Strict):
    """Outcome columns of ``patients.csv`` (never used in prompts or training)."""

    egfr: dict[int, str] = Field(
        default_factory=lambda: {2: "egfr_y2", 3: "egfr_y3", 4: "egfr_y4"},
        description="Horizon in years -> column with the eGFR at that horizon (NaN = unknown).",
    )
    graft_loss: str = "graft_loss"
    graft_loss_days: str | None = Field(
        "graft_loss_days", description="Days from transplant to graft loss (NaN if none)."
    )
    followup_days: str = "followup_days"
    threshold: float = Field(45.0, description="Poor status: eGFR below this (mL/min/1.73m²).")

    def columns(self) -> list[str]:
        """Every column that holds outcome information."""
        cols = [*self.egfr.values(), self.graft_loss, self.followup_days]
        if self.graft_loss_days:
            cols.append(self.graft_loss_days)
        return cols


class Range(_Strict):
    """The plausible values of a numeric column (inclusive bounds; None: unbounded)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"range min {self.min:g} is above max {self.max:g}")
        return self

    def __contains__(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def __str__(self) -> str:
        lo = "-inf" if self.min is None else f"{self.min:g}"
        hi = "+inf" if self.max is None else f"{self.max:g}"
        return f"[{lo}, {hi}]"


#: Plausible ranges of the built-in columns (the simulator's names), used unless study.yaml's
#: ``ranges`` says otherwise. Wide on purpose: a value outside is a typo or a wrong unit.
DEFAULT_RANGES: dict[str, Range] = {
    "donor_age": Range(min=0, max=100),  # years
    "recipient_age": Range(min=0, max=100),  # years
    "egfr": Range(min=0, max=200),  # mL/min/1.73 m²
    "creatinine_mg_dl": Range(min=0.1, max=30),  # mg/dL; 0 is impossible
    "creatinine_cv": Range(min=0, max=300),  # %
    "days_post_transplant": Range(min=0, max=36500),
    "followup_days": Range(min=0, max=36500),
    "graft_loss_days": Range(min=0, max=36500),
    "acquisition_s": Range(min=0, max=7200),
}


#: the words PyYAML reads as a boolean (YAML 1.1), by the boolean
_YAML_BOOL = {True: ("yes", "true", "on"), False: ("no", "false", "off")}


class DateColumns(_Strict):
    """Date columns of a clinic's export, turned into the day counts medimp reads.

    Every count is in days from the patient's transplant date (``transplant``, a patients.csv
    column): ``exam`` (exams.csv) gives ``days_post_transplant``; ``graft_loss`` and
    ``followup`` (patients.csv, the date of graft loss and of the last follow-up) give the
    outcome columns ``outcomes.graft_loss_days`` and ``outcomes.followup_days``.
    """

    format: str = Field("%d/%m/%Y", description="strptime format of every date column, e.g. "
                        "'%d/%m/%Y' (31/01/2021) or '%Y-%m-%d' (2021-01-31).")
    transplant: str = Field(description="patients.csv column: the date of transplant.")
    exam: str | None = Field(None, description="exams.csv column: the date of the exam.")
    graft_loss: str | None = Field(None, description="patients.csv column: the date of graft "
                                   "loss (empty when the graft is not lost).")
    followup: str | None = Field(None, description="patients.csv column: the date of the last "
                                 "follow-up.")

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if not all(f"%{c}" in v for c in "dm") or not ("%Y" in v or "%y" in v):
            raise ValueError(f"dates.format {v!r} needs %d, %m and %Y (e.g. '%d/%m/%Y')")
        return v


class Study(_Strict):
    """Everything ``study.yaml`` says about a cohort."""

    name: str = "cohort"
    exams: list[ExamSpec]
    phases: list[PhaseSpec]
    variables: list[TextVariable]
    outcomes: Outcomes = Field(default_factory=Outcomes)
    baseline_columns: list[str] = Field(
        default_factory=list,
        description="Other patients.csv columns known at transplant (usable by clinical_only).",
    )
    exam_columns: list[str] = Field(
        default_factory=list,
        description="Other exams.csv columns measured at the exam (usable by clinical_only).",
    )
    missing_values: list[str] = Field(
        default_factory=lambda: [""],
        description="Cell spellings (after trimming spaces) that mean 'unknown' in the value "
        "columns of the CSV files, e.g. ['', 'NA', 'n/a']. Default: only the empty cell. "
        "Patient ids, exam and phase labels and paths are never read as missing.",
    )
    ranges: dict[str, Range | None] = Field(
        default_factory=dict,
        description="Column -> plausible {min, max} of a numeric column of exams.csv or "
        "patients.csv, in its quantity's unit; it replaces the range of the column's role "
        "(medimp._units); null turns it off. The eGFR outcome columns share the range of "
        "'egfr' unless given.",
    )
    out_of_range: Literal["error", "warning"] = Field(
        "error", description="What a value outside its range is: an error (the cohort is "
        "refused until it is fixed) or a warning.")
    strict_paths: bool = Field(
        False, description="Refuse manifest paths that lead outside the cohort folder (an "
        "absolute path, '../', a symlink out); by default they are a warning.")
    dynamic: DynamicSpec = Field(
        default_factory=DynamicSpec,
        description="How the phases of dynamic (4D) series are chosen (manifest phase "
        "'dynamic').",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="A file's column -> the medimp column it is (any table), e.g. "
        "{'Patient ID': patient_id, 'Visit': exam}; renamed when the tables are read.")
    values: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Column -> {word as written: number}, e.g. {'Graft loss': {Yes: 1, No: 0}}"
        " (case-insensitive); applied when the tables are read.")
    units: dict[str, str] = Field(
        default_factory=dict,
        description="Column -> the unit its values are written in (e.g. µmol/L, mg/dL, "
        "months); converted on read to the unit of its quantity (medimp._units).")
    dates: DateColumns | None = Field(
        None, description="Date columns that give days_post_transplant, graft_loss_days and "
        "followup_days (days from the transplant date).")

    @field_validator("values", mode="before")
    @classmethod
    def _yaml_booleans(cls, v: Any) -> Any:
        """``{Yes: 1, No: 0}`` unquoted is YAML's ``{true: 1, false: 0}``: the key stands
        for the words YAML reads as that boolean (yes/true/on, no/false/off)."""
        if not isinstance(v, dict):
            return v
        out: dict[Any, Any] = {}
        for col, words in v.items():
            if not isinstance(words, dict):
                out[col] = words
                continue
            mapped: dict[Any, Any] = {}
            for word, number in words.items():
                if isinstance(word, bool):
                    for spelling in _YAML_BOOL[word]:
                        mapped.setdefault(spelling, number)
                else:
                    mapped[str(word) if isinstance(word, int | float) else word] = number
            out[col] = mapped
        return out

    @field_validator("units")
    @classmethod
    def _known_units(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for col, unit in v.items():
            known = normalise_unit(unit)
            if known is None:
                units = sorted({u for q in QUANTITIES.values() for u in q.factors})
                raise ValueError(f"units: unknown unit {unit!r} of column {col!r}; known: "
                                 f"{units}")
            out[col] = known
        return out

    @field_validator("exams")
    @classmethod
    def _unique_exams(cls, v: list[ExamSpec]) -> list[ExamSpec]:
        names = [e.name for e in v]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"exam names must be unique and non-empty, got {names}")
        return v

    @field_validator("phases")
    @classmethod
    def _unique_phases(cls, v: list[PhaseSpec]) -> list[PhaseSpec]:
        names = [p.name for p in v]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"phase names must be unique and non-empty, got {names}")
        return v

    @model_validator(mode="after")
    def _no_outcome_in_prompts(self) -> Study:
        outcome_cols = set(self.outcomes.columns())
        for var in self.variables:
            if var.table == "patients" and var.column in outcome_cols:
                raise ValueError(
                    f"variable {var.name!r} reads outcome column {var.column!r}: outcomes are "
                    "only known after the exam and must never enter a prompt"
                )
        return self

    @model_validator(mode="after")
    def _known_from_exam(self) -> Study:
        names = {e.name for e in self.exams}
        for var in self.variables:
            if var.from_exam is not None and var.from_exam not in names:
                raise ValueError(
                    f"variable {var.name!r}: from_exam {var.from_exam!r} is not an exam of "
                    f"study.yaml ({sorted(names)})"
                )
        return self

    def column_ranges(self) -> dict[str, Range]:
        """Column -> plausible range: DEFAULT_RANGES (eGFR's also for the eGFR outcome
        columns) overridden by ``ranges``."""
        out = dict(DEFAULT_RANGES)
        for col in self.outcomes.egfr.values():
            out.setdefault(col, DEFAULT_RANGES["egfr"])
        out.update(self.ranges)
        return {c: r for c, r in out.items() if r is not None}

    @model_validator(mode="after")
    def _dynamic_phases(self) -> Study:
        d, names = self.dynamic, [p.name for p in self.phases]
        if DYNAMIC_PHASE in names:
            raise ValueError(f"phase name {DYNAMIC_PHASE!r} is reserved for manifest rows of "
                             "dynamic series; rename the phase")
        if d.select == "index":
            assert d.frames is not None
            if set(d.frames) != set(names):
                raise ValueError(f"dynamic.frames must give a frame for every phase {names}, "
                                 f"got {sorted(d.frames)}")
        return self

    @property
    def exam_names(self) -> list[str]:
        return [e.name for e in self.exams]

    @property
    def phase_names(self) -> list[str]:
        return [p.name for p in self.phases]

    def exam(self, name: str) -> ExamSpec:
        for e in self.exams:
            if e.name == name:
                return e
        raise KeyError(f"unknown exam {name!r}; study.yaml lists {self.exam_names}")

    def variable(self, name: str) -> TextVariable:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(f"unknown variable {name!r}; study.yaml lists "
                       f"{[v.name for v in self.variables]}")
