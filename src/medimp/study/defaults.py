"""MEDIMP's defaults (Milecki et al., MIDL 2023) over the simulator's column names.

Donor age under 65 / 65 or more; GFR extremely low <15, very low <30, low <45, medium <60,
high >=60 mL/min/1.73 m² (or the six KDIGO G-stages); creatinine variability minor / marked.
"""

from __future__ import annotations

from typing import Literal

from medimp.study.errors import StudyError
from medimp.study.schema import Bin, ExamSpec, PhaseSpec, Study, TextVariable

__all__ = ["GFR_BINNINGS", "GFR_BINS", "KDIGO_GFR_BINS", "default_study"]


GFR_BINS = [
    Bin(label="extremely low", upper=15),
    Bin(label="very low", upper=30),
    Bin(label="low", upper=45),
    Bin(label="medium", upper=60),
    Bin(label="high"),
]


# KDIGO 2012 GFR categories G1..G5 (mL/min/1.73 m²), as words that fit "GFR was found to be …".
KDIGO_GFR_BINS = [
    Bin(label="in the kidney failure range", upper=15),  # G5
    Bin(label="severely decreased", upper=30),  # G4
    Bin(label="moderately to severely decreased", upper=45),  # G3b
    Bin(label="mildly to moderately decreased", upper=60),  # G3a
    Bin(label="mildly decreased", upper=90),  # G2
    Bin(label="normal or high"),  # G1
]

GFR_BINNINGS = {"medimp": GFR_BINS, "kdigo": KDIGO_GFR_BINS}


def default_study(
    name: str = "medimp-default", gfr_binning: Literal["medimp", "kdigo"] = "medimp"
) -> Study:
    """MEDIMP's variables, bins and templates over the simulator's column names.

    Args:
        name: study name.
        gfr_binning: ``"medimp"`` (the paper's five bins, the default) or ``"kdigo"`` (the six
            KDIGO G-stages, G5 <15 … G1 >=90).
    """
    if gfr_binning not in GFR_BINNINGS:
        raise StudyError(f"unknown gfr_binning {gfr_binning!r}; choose one of {list(GFR_BINNINGS)}")
    return Study(
        name=name,
        exams=[
            ExamSpec(name="D15", days=15, phrase="two-week"),
            ExamSpec(name="D30", days=30, phrase="first month"),
            ExamSpec(name="M3", days=91, phrase="third month"),
            ExamSpec(name="M12", days=365, phrase="first year"),
        ],
        phases=[
            PhaseSpec(name="pre", seconds=0.0),
            PhaseSpec(name="arterial", seconds=30.0),
            PhaseSpec(name="tubular", seconds=180.0),
        ],
        variables=[
            TextVariable(
                name="donor_age",
                table="patients",
                column="donor_age",
                known_at="transplant",
                # words that read as English in the template and its paraphrases ("was under 65
                # years of age", "the donor's age was 65 or more")
                bins=[Bin(label="under 65", upper=65), Bin(label="65 or more")],
                slot="age",
                template="The kidney donor was {age} years of age.",
            ),
            TextVariable(
                name="gfr",
                table="exams",
                column="egfr",
                known_at="exam",
                bins=list(GFR_BINNINGS[gfr_binning]),
                slot="gfr",
                template="The patient's GFR was found to be {gfr} at the {date} check-up.",
            ),
            TextVariable(
                name="creatinine_variability",
                table="exams",
                column="creatinine_cv",
                known_at="exam",
                # coefficient of variation (%) of serum creatinine over the weeks before the exam
                # adjectives of "fluctuations" ("fluctuating fluctuations" repeated the noun)
                bins=[Bin(label="minor", upper=15.0), Bin(label="marked")],
                synonyms={
                    "minor": ["minor", "small", "slight"],
                    "marked": ["marked", "large", "strong"],
                },
                slot="adj",
                template="Creatinine levels displayed {adj} fluctuations.",
            ),
        ],
        baseline_columns=["donor_age", "donor_type", "recipient_age", "recipient_sex"],
        exam_columns=["egfr", "creatinine_mg_dl", "creatinine_cv"],
    )
