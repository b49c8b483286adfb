"""Tracer kinetics and MR signal of each tissue class, once per exam.

Concentrations come from dcmri: Parker's population arterial input function and the 7-compartment
cortico-medullary kidney model (``dcmri.conc_kidney_cm``), whose plasma flow ``Fp`` and glomerular
extraction ``Eg`` are tied to the patient's true GFR at the exam:

    GFR / 60 = V · Fp · Eg · ((1 - f) + f · ρ_F · ρ_E)

(V kidney volume in mL, f fibrosis fraction, ρ_F, ρ_E the relative perfusion and extraction of
fibrotic tissue). Fibrotic tissue gets its own, slower curve, and a longer native T1. Each tissue's
concentration, sampled at the phase times, becomes R1 = R10 + r1·C and a spoiled-gradient-echo
steady-state signal (``dcmri.signal_ss``). The images are then a per-voxel mix of a handful of
scalars per phase (see :mod:`medimp.simulate.signal`), which keeps the simulator fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medimp.simulate.anatomy import TISSUES

__all__ = ["FIBROTIC_EXTRACTION", "FIBROTIC_PERFUSION", "ExamKinetics", "exam_kinetics",
           "plasma_flow"]

FIBROTIC_PERFUSION = 0.35  # plasma flow of fibrotic tissue relative to healthy tissue
FIBROTIC_EXTRACTION = 0.40  # glomerular extraction of fibrotic tissue relative to healthy
FIELD_T = 3.0
AGENT = "gadoterate"
HCT = 0.42
TR_S = 0.0035
FLIP_DEG = 15.0
DT = 0.5  # s, forward-model time step
# native T1 (s) at 3 T: cortex/medulla (Cox et al. 2018), fat and muscle (literature values)
T1 = {"cortex": 1.40, "cortex_fibrotic": 1.62, "medulla": 1.69, "medulla_fibrotic": 1.75,
      "sinus": 0.45, "fat": 0.38, "muscle": 1.41, "blood": 1.0 / (0.52 * HCT + 0.38)}
# relative proton density
PD = {"cortex": 1.0, "cortex_fibrotic": 1.0, "medulla": 1.02, "medulla_fibrotic": 1.02,
      "sinus": 0.9, "fat": 0.95, "muscle": 0.8, "blood": 1.0}


def plasma_flow(gfr: np.ndarray | float, volume_ml: np.ndarray | float,
                extraction: np.ndarray | float, fibrosis: np.ndarray | float) -> np.ndarray:
    """Healthy-tissue plasma flow Fp (mL/s/mL) that yields ``gfr`` (mL/min) for this kidney."""
    f = np.asarray(fibrosis, dtype=float)
    eff = (1 - f) + f * FIBROTIC_PERFUSION * FIBROTIC_EXTRACTION
    fp = np.asarray(gfr, dtype=float) / 60.0 / (np.asarray(volume_ml) * np.asarray(extraction)
                                                * eff)
    return np.clip(fp, 0.002, 0.12)


@dataclass(frozen=True)
class ExamKinetics:
    """Per-tissue signals at the phase times, and the full curves for the figures."""

    times: np.ndarray  # [T] s after bolus arrival (forward-model grid, for figures)
    conc: dict[str, np.ndarray]  # tissue -> [T] concentration (M)
    phase_signal: np.ndarray  # [phases, len(TISSUES)] signal (a.u., S0 = 1)


def _conc_curves(t: np.ndarray, bat: float, fp: float, eg: float,
                 rng: np.random.Generator) -> dict[str, np.ndarray]:
    import dcmri

    cp = dcmri.aif_parker(t, BAT=bat)
    tv = {"Tg": rng.uniform(3.5, 5), "Tv": rng.uniform(8, 12), "Tpt": rng.uniform(45, 70),
          "Tlh": rng.uniform(45, 70), "Tdt": rng.uniform(25, 35), "Tcd": rng.uniform(25, 35)}
    fc = 0.8

    def cm(fp_: float, eg_: float, slow: float) -> tuple[np.ndarray, np.ndarray]:
        return dcmri.conc_kidney_cm(cp, fp_, eg_, fc, tv["Tg"], tv["Tv"], slow * tv["Tpt"],
                                    slow * tv["Tlh"], slow * tv["Tdt"], slow * tv["Tcd"], dt=DT,
                                    kinetics="7C")

    cc, cmed = cm(fp, eg, 1.0)
    ccf, cmf = cm(fp * FIBROTIC_PERFUSION, eg * FIBROTIC_EXTRACTION, 1.5)
    from dcmri import pk

    # extracellular soft tissue: small plasma volume + one leaky compartment
    muscle = 0.03 * cp + pk.conc_comp(0.0015 * cp, 300.0, dt=DT)
    sinus = 0.10 * cp + pk.conc_comp(0.004 * cp, 200.0, dt=DT)
    fat = 0.01 * cp + pk.conc_comp(0.0004 * cp, 400.0, dt=DT)
    return {"aif": cp, "cortex": cc, "cortex_fibrotic": ccf, "medulla": cmed,
            "medulla_fibrotic": cmf, "sinus": sinus, "fat": fat, "muscle": muscle,
            "blood": cp * (1 - HCT)}


def exam_kinetics(gfr: float, volume_ml: float, extraction: float, fibrosis: float, *,
                  phase_times: list[float], rng: np.random.Generator) -> ExamKinetics:
    """Concentration curves of every tissue and its SPGR signal at each phase time.

    Args:
        gfr: true GFR at the exam (mL/min; per 1.73 m² taken as the graft's own).
        volume_ml: kidney volume.
        extraction: glomerular extraction fraction of healthy tissue.
        fibrosis: fibrosis fraction (share of tissue on the slow, fibrotic curves).
        phase_times: seconds after bolus arrival of each phase (<= 0: before arrival).
        rng: draws bolus arrival time and transit times.
    """
    import dcmri

    bat = float(rng.uniform(8, 14))
    t = np.arange(0.0, bat + max(*phase_times, 0) + 30.0, DT)
    fp = float(plasma_flow(gfr, volume_ml, extraction, fibrosis))
    conc = _conc_curves(t, bat, fp, extraction, rng)
    r1 = dcmri.relaxivity(FIELD_T, "plasma", AGENT)
    idx = [int(np.clip(np.round((bat + pt) / DT), 0, t.size - 1)) if pt > 0 else 0
           for pt in phase_times]
    sig = np.empty((len(phase_times), len(TISSUES)))
    for j, tissue in enumerate(TISSUES):
        r1_t = 1.0 / T1[tissue] + r1 * conc[tissue][idx]
        sig[:, j] = PD[tissue] * dcmri.signal_ss(1.0, r1_t, TR_S, FLIP_DEG)
    return ExamKinetics(times=t - bat, conc=conc, phase_signal=sig)
