"""Clinical part of the simulator: patients, exams, outcomes and their latent ground truth.

Every patient has a latent graft health: a functioning nephron mass (relative to an average
graft, 1.0) and a fibrosis fraction (interstitial fibrosis / tubular atrophy, share of the
parenchyma) that grows with time. The post-transplant GFR rises to a plateau (slower after a
deceased donor: delayed graft function) and then declines linearly at a patient-specific rate
driven mostly by fibrosis, donor age and rejection episodes. Fibrosis weighs far more on the
*future* decline than on today's GFR, and it is drawn as visible patches in the images
(:mod:`medimp.simulate.anatomy`): the images hold prognostic information beyond today's eGFR.

Serum creatinine is the inverse of the CKD-EPI 2021 race-free equation (Inker et al., NEJM
2021) at the recipient's age at the exam, so ``ckd_epi_2021(creatinine, age, sex)`` gives back the
``egfr`` column. Sources for every range are in ``docs/simulate.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medimp.study import Study, default_study

__all__ = [
    "EXAM_JITTER_DAYS",
    "ckd_epi_2021",
    "creatinine_from_egfr",
    "poor_status",
    "recipient_age_at",
    "simulate_clinical",
]

#: Standard deviation (days) of the actual exam date around the nominal day of each exam.
EXAM_JITTER_DAYS = {"D15": 2.0, "D30": 4.0, "M3": 10.0, "M12": 25.0}
_HORIZONS = (2, 3, 4)
_DAYS_PER_YEAR = 365.25
_LOSS_GFR = 10.0  # below this true GFR the graft is lost (return to dialysis)


def ckd_epi_2021(creatinine_mg_dl: np.ndarray | float, age: np.ndarray | float,
                 sex: np.ndarray | str) -> np.ndarray:
    """eGFR (mL/min/1.73 m²) from serum creatinine by the race-free CKD-EPI 2021 equation.

    eGFR = 142 · min(Scr/κ, 1)^α · max(Scr/κ, 1)^-1.200 · 0.9938^age · 1.012 [female], with
    κ = 0.7 (F) / 0.9 (M) and α = -0.241 (F) / -0.302 (M) (Inker et al., NEJM 2021).
    """
    scr = np.asarray(creatinine_mg_dl, dtype=float)
    female = np.asarray(sex) == "F"
    kappa = np.where(female, 0.7, 0.9)
    alpha = np.where(female, -0.241, -0.302)
    ratio = scr / kappa
    return (142.0 * np.minimum(ratio, 1.0) ** alpha * np.maximum(ratio, 1.0) ** -1.200
            * 0.9938 ** np.asarray(age, dtype=float) * np.where(female, 1.012, 1.0))


def creatinine_from_egfr(egfr: np.ndarray | float, age: np.ndarray | float,
                         sex: np.ndarray | str) -> np.ndarray:
    """Exact inverse of :func:`ckd_epi_2021`: the creatinine (mg/dL) that gives ``egfr``."""
    female = np.asarray(sex) == "F"
    kappa = np.where(female, 0.7, 0.9)
    alpha = np.where(female, -0.241, -0.302)
    a = np.asarray(egfr, dtype=float) / (
        142.0 * 0.9938 ** np.asarray(age, dtype=float) * np.where(female, 1.012, 1.0))
    # a >= 1 <=> Scr <= kappa (the alpha branch); otherwise the -1.2 branch
    return np.where(a >= 1.0, kappa * a ** (1.0 / alpha), kappa * a ** (-1.0 / 1.2))


def recipient_age_at(recipient_age: np.ndarray | float, days: np.ndarray | float) -> np.ndarray:
    """Recipient age (years) at ``days`` after transplant: the age used by CKD-EPI."""
    return np.asarray(recipient_age, dtype=float) + np.asarray(days, dtype=float) / _DAYS_PER_YEAR


def _lab_creatinine(egfr: np.ndarray, age: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """Creatinine as a lab reports it (0.01 mg/dL, never below 0.40) for a measured eGFR."""
    return np.round(np.clip(creatinine_from_egfr(egfr, age, sex), 0.40, None), 2)


@dataclass(frozen=True)
class _Latent:
    """Per-patient latent parameters (vectors over patients)."""

    nephron_mass: np.ndarray
    fibrosis0: np.ndarray
    fibrosis_rate: np.ndarray
    plateau_gfr: np.ndarray
    dgf_factor: np.ndarray
    decline_rate: np.ndarray
    rejection_day: np.ndarray  # day of first rejection episode (inf if none)
    rejection_episodes: np.ndarray


def _true_gfr(lat: _Latent, days: np.ndarray) -> np.ndarray:
    """True GFR (mL/min/1.73 m²) at ``days`` (shape [n] or [n, k]) after transplant."""
    d = np.asarray(days, dtype=float)
    col = (lambda v: v[:, None]) if d.ndim == 2 else (lambda v: v)
    # recovery: early GFR = plateau * (dgf + (1 - dgf) * (1 - exp(-day/20)))
    recov = col(lat.dgf_factor) + (1 - col(lat.dgf_factor)) * (1 - np.exp(-d / 20.0))
    years_after_m3 = np.clip((d - 91.0) / _DAYS_PER_YEAR, 0.0, None)
    gfr = col(lat.plateau_gfr) * recov - col(lat.decline_rate) * years_after_m3
    # an acute rejection episode takes a bite out of GFR, partly recovered
    hit = (d >= col(lat.rejection_day)) * 6.0 * col(np.minimum(lat.rejection_episodes, 3))
    return np.clip(gfr - hit, 3.0, None)


def _fibrosis_at(lat: _Latent, days: np.ndarray) -> np.ndarray:
    d = np.asarray(days, dtype=float)
    col = (lambda v: v[:, None]) if d.ndim == 2 else (lambda v: v)
    return np.clip(col(lat.fibrosis0) + col(lat.fibrosis_rate) * d / _DAYS_PER_YEAR, 0.0, 0.8)


def simulate_clinical(
    n_patients: int, seed: int = 0, study: Study | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Draw a cohort's clinical tables and latent truth, without images.

    A cohort in which some horizon's "poor status" label (eGFR below the study threshold or
    graft loss before K years) has only one class among the patients with a known status is
    redrawn (deterministically, from ``seed``): with >= 10 patients every task has both classes.

    Args:
        n_patients: number of patients (ids ``P0001``...).
        seed: random seed; the same seed gives the same tables.
        study: exams to simulate (default: :func:`medimp.study.default_study`).

    Returns:
        ``(patients, exams, truth)``: ``patients`` has one row per patient (baseline and outcome
        columns of ``study.yaml``); ``exams`` one row per *acquired* exam (about 10–20% of the
        study's exams are missing); ``truth`` one row per acquired exam with the latent state
        (``gfr_true``, ``nephron_mass``, ``fibrosis_fraction``, ``decline_rate``,
        ``rejection_episodes``, ``kidney_volume_ml``, ``extraction_fraction``).
    """
    study = study or default_study()
    tables = _draw_clinical(n_patients, np.random.SeedSequence([seed, 0xC11]), study)
    for attempt in range(1, 200):
        if _both_classes(tables[0], study):
            break
        tables = _draw_clinical(n_patients, np.random.SeedSequence([seed, 0xC11, attempt]),
                                study)
    return tables


def poor_status(patients: pd.DataFrame, years: int, study: Study | None = None) -> pd.Series:
    """Poor graft status at ``years``: 1/0, NaN when unknown (docs/design.md's label)."""
    study = study or default_study()
    out = study.outcomes
    day = years * _DAYS_PER_YEAR
    lost = (patients[out.graft_loss] == 1)
    if out.graft_loss_days:
        lost &= patients[out.graft_loss_days] <= day
    egfr = patients[out.egfr[years]]
    label = ((egfr < out.threshold) | lost).astype(float)
    return label.where(egfr.notna() | lost)


def _both_classes(patients: pd.DataFrame, study: Study) -> bool:
    for years in study.outcomes.egfr:
        label = poor_status(patients, years, study).dropna()
        if label.nunique() < 2:
            return False
    return True


@dataclass
class _People:
    """Donor and recipient of each patient (vectors over patients)."""

    pid: np.ndarray
    living: np.ndarray
    donor_age: np.ndarray
    recipient_age: np.ndarray
    sex: np.ndarray


def _draw_clinical(n_patients: int, seed_seq: np.random.SeedSequence,
                   study: Study) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    # one generator, drawn in a fixed order: people, latent health, follow-up, outcomes, exams
    rng = np.random.default_rng(seed_seq)
    people = _draw_people(rng, int(n_patients))
    lat, volume0 = _draw_latent(rng, people)
    loss_day, graft_loss, followup_days = _draw_followup(rng, lat, len(people.pid))
    patients = _patients_table(rng, study, people, lat, loss_day=loss_day,
                               graft_loss=graft_loss, followup_days=followup_days)
    exams, truth = _draw_exams(rng, study, people, lat, volume0=volume0,
                               followup_days=followup_days)
    return patients, exams, truth


def _draw_people(rng: np.random.Generator, n: int) -> _People:
    """Donors and recipients (ranges: OPTN/SRTR 2022, ERA registry; docs/simulate.md)."""
    pid = np.array([f"P{i + 1:04d}" for i in range(n)])
    living = rng.random(n) < 0.30
    donor_age = np.where(living, rng.normal(45, 11, n), rng.normal(52, 15, n))
    donor_age = np.clip(np.round(donor_age), 18, 85).astype(int)
    recipient_age = np.clip(np.round(rng.normal(52, 13, n)), 18, 80).astype(int)
    female = rng.random(n) < 0.38
    sex = np.where(female, "F", "M")
    return _People(pid, living, donor_age, recipient_age, sex)


def _draw_latent(rng: np.random.Generator, people: _People) -> tuple[_Latent, np.ndarray]:
    """Latent graft health, and the graft volume (mL) at transplant."""
    n, living = len(people.pid), people.living
    age_excess = np.clip(people.donor_age - 40, 0, None)
    nephron_mass = np.exp(rng.normal(0, 0.20, n)) * (1 - 0.006 * age_excess) * np.where(
        living, 1.05, 0.95)
    fibrosis0 = np.clip(rng.gamma(1.5, 0.05, n) + 0.002 * age_excess + 0.02 * ~living,
                        0.0, 0.6)
    fibrosis_rate = np.clip(0.02 + 0.25 * fibrosis0 + rng.normal(0, 0.01, n), 0.0, None)
    rejection_episodes = rng.poisson(np.where(living, 0.2, 0.35))
    rejection_day = np.where(rejection_episodes > 0, rng.uniform(5, 300, n), np.inf)
    plateau_gfr = np.clip(74 * nephron_mass * (1 - 0.2 * fibrosis0) + rng.normal(0, 5, n),
                          12, 110)
    dgf_factor = np.where(living, rng.uniform(0.75, 1.0, n),
                          np.where(rng.random(n) < 0.3, rng.uniform(0.15, 0.5, n),
                                   rng.uniform(0.6, 1.0, n)))
    # decline (mL/min/1.73m^2 per year): fibrosis dominates, then donor age, then rejection
    decline_rate = np.clip(-2.5 + 40 * fibrosis0 + 0.06 * age_excess + 2.0 * rejection_episodes
                           + rng.normal(0, 1.0, n), -1.5, None)
    # graft volume (mL): weakly tied to nephron mass, so GFR per mL (perfusion) tracks GFR
    volume0 = 165 * nephron_mass**0.3 * np.exp(rng.normal(0, 0.08, n))
    lat = _Latent(nephron_mass, fibrosis0, fibrosis_rate, plateau_gfr, dgf_factor, decline_rate,
                  rejection_day, rejection_episodes)
    return lat, volume0


def _draw_followup(rng: np.random.Generator, lat: _Latent, n: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(day of graft loss or inf, graft lost during follow-up, follow-up days)."""
    # graft loss: first time the true GFR falls below _LOSS_GFR (daily grid up to 4 years),
    # plus rare sudden losses (thrombosis, acute rejection, non-adherence)
    grid = np.arange(1, int(4 * _DAYS_PER_YEAR) + 1)
    below = _true_gfr(lat, np.broadcast_to(grid, (n, grid.size))) < _LOSS_GFR
    below[:, :91] = False  # early low GFR is delayed graft function, not loss
    loss_day = np.where(below.any(axis=1), grid[np.argmax(below, axis=1)], np.inf)
    sudden = rng.random(n) < 0.05
    loss_day = np.where(sudden, np.minimum(loss_day, rng.uniform(20, 1460, n)), loss_day)

    # follow-up: most followed 4 years; ~12% lost to follow-up between 0.5 and 4 years
    end = 4 * _DAYS_PER_YEAR + rng.uniform(0, 60, n)
    lost = rng.random(n) < 0.12
    censor = np.where(lost, rng.uniform(0.5, 4.0, n) * _DAYS_PER_YEAR, end)
    graft_loss = loss_day <= censor
    followup_days = np.round(np.where(graft_loss, loss_day, censor)).astype(int)
    return loss_day, graft_loss, followup_days


def _measured_egfr(rng: np.random.Generator, lat: _Latent, days: np.ndarray,
                   sd: float) -> np.ndarray:
    return _true_gfr(lat, days) * np.exp(rng.normal(0, sd, np.shape(days)))


def _patients_table(rng: np.random.Generator, study: Study, people: _People, lat: _Latent, *,
                    loss_day: np.ndarray, graft_loss: np.ndarray,
                    followup_days: np.ndarray) -> pd.DataFrame:
    """patients.csv: baseline values and outcomes (eGFR at each horizon, graft loss)."""
    n, recipient_age, sex = len(people.pid), people.recipient_age, people.sex
    patients = pd.DataFrame({
        "patient_id": people.pid,
        "donor_age": people.donor_age,
        "donor_type": np.where(people.living, "living", "deceased"),
        "recipient_age": recipient_age,
        "recipient_sex": sex,
    })
    for k in _HORIZONS:
        day = np.full(n, k * _DAYS_PER_YEAR)
        egfr_k = _measured_egfr(rng, lat, day, 0.08)
        known = (followup_days >= day) & ~(graft_loss & (loss_day <= day))
        scr = _lab_creatinine(egfr_k, recipient_age_at(recipient_age, day), sex)
        egfr_k = np.round(ckd_epi_2021(scr, recipient_age_at(recipient_age, day), sex), 1)
        patients[study.outcomes.egfr.get(k, f"egfr_y{k}")] = np.where(known, egfr_k, np.nan)
    patients["graft_loss"] = graft_loss.astype(int)
    patients["graft_loss_days"] = np.where(graft_loss, np.round(loss_day), np.nan)
    patients["followup_days"] = followup_days
    return patients


def _exam_days(rng: np.random.Generator, study: Study, followup_days: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """(days after transplant [n, exams], acquired [n, exams]): nominal day + jitter, 10-20%
    missing, none after graft loss or the end of follow-up, never all of a patient's exams."""
    n = len(followup_days)
    present = rng.random((n, len(study.exams))) >= 0.14
    jitters = [EXAM_JITTER_DAYS.get(ex.name, 0.03 * ex.days + 1) for ex in study.exams]
    all_days = np.stack([np.clip(np.round(ex.days + rng.normal(0, jit, n)), 1, None)
                         for ex, jit in zip(study.exams, jitters, strict=True)], axis=1)
    # an exam after graft loss or after the patient left the study does not happen
    acquired = present & (all_days < followup_days[:, None])
    # ...but everyone in the cohort had at least the first exam (before any loss)
    none = ~acquired.any(axis=1)
    acquired[none, 0] = True
    all_days[none, 0] = np.minimum(all_days[none, 0], followup_days[none] - 1)
    return all_days, acquired


def _draw_exams(rng: np.random.Generator, study: Study, people: _People, lat: _Latent, *,
                volume0: np.ndarray, followup_days: np.ndarray
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """exams.csv (measured values) and truth.csv (latent values) of every acquired exam."""
    pid, recipient_age, sex = people.pid, people.recipient_age, people.sex
    n = len(pid)
    exam_rows: list[pd.DataFrame] = []
    truth_rows: list[pd.DataFrame] = []
    all_days, acquired = _exam_days(rng, study, followup_days)
    for j, ex in enumerate(study.exams):
        days = all_days[:, j].astype(int)
        ok = acquired[:, j]
        gfr_true = _true_gfr(lat, days)
        egfr_m = _measured_egfr(rng, lat, days, 0.06)
        age_at = recipient_age_at(recipient_age, days)
        scr = _lab_creatinine(egfr_m, age_at, sex)
        egfr = np.round(ckd_epi_2021(scr, age_at, sex), 1)
        # creatinine CV (%) over the weeks before the exam: high early and around rejection
        recent_rej = np.abs(days - lat.rejection_day) < 60
        cv = (8.5 + 25.0 * _fibrosis_at(lat, days) + 10.0 * np.exp(-days / 25.0)
              + 10.0 * recent_rej + 8.0 * (1 - lat.dgf_factor) * (days < 60)
              ) * np.exp(rng.normal(0, 0.35, n))
        exam_rows.append(pd.DataFrame({
            "patient_id": pid, "exam": ex.name, "days_post_transplant": days, "egfr": egfr,
            "creatinine_mg_dl": scr, "creatinine_cv": np.round(cv, 1)})[ok])
        truth_rows.append(pd.DataFrame({
            "patient_id": pid, "exam": ex.name, "gfr_true": np.round(gfr_true, 3),
            "nephron_mass": np.round(lat.nephron_mass, 4),
            "fibrosis_fraction": np.round(_fibrosis_at(lat, days), 4),
            "decline_rate": np.round(lat.decline_rate, 3),
            "rejection_episodes": ((days >= lat.rejection_day)
                                   * lat.rejection_episodes).astype(int),
            "kidney_volume_ml": np.round(volume0 * (1 + 0.08 * (days > 60)), 1),
            "extraction_fraction": np.round(np.clip(0.20 * (1 - 0.5 * _fibrosis_at(lat, days)),
                                                    0.06, 0.3), 4),
        })[ok])
    order = {e: i for i, e in enumerate(study.exam_names)}

    def tidy(df: pd.DataFrame) -> pd.DataFrame:
        df = df.assign(_o=df["exam"].map(order)).sort_values(["patient_id", "_o"])
        return df.drop(columns="_o").reset_index(drop=True)

    return tidy(pd.concat(exam_rows)), tidy(pd.concat(truth_rows))
