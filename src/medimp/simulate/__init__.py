"""Synthetic renal-transplant DCE-MRI cohorts with known ground truth.

``simulate_cohort`` writes a full cohort directory (tables, study.yaml, images, truth, figures);
``simulate_clinical`` draws only the tables, for studies of the clinical model at scale.
"""

from medimp.simulate.clinical import ckd_epi_2021, creatinine_from_egfr, simulate_clinical
from medimp.simulate.writer import MIN_PATIENTS, SimulationError, simulate_cohort

__all__ = [
    "MIN_PATIENTS",
    "SimulationError",
    "ckd_epi_2021",
    "creatinine_from_egfr",
    "simulate_clinical",
    "simulate_cohort",
]
