"""Acquisition profiles of simulated sites: the same patients' biology, another scanner.

A site changes only how the images are acquired, never the patients: receiver gain, noise level,
coil bias field, field of view (hence voxel size) and the timing of the contrast phases. Site 0
is the simulator's default (:data:`DEFAULT_SITE`, byte-identical to a cohort simulated without
``--site``); each other site number ``N`` gets a profile drawn reproducibly from ``N`` within the
ranges of :data:`SITE_RANGES` (docs/simulate.md, "Sites"), so that ``--site 1`` means the same
scanner on every machine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["DEFAULT_SITE", "SITE_RANGES", "SiteProfile", "site_profile"]


@dataclass(frozen=True)
class SiteProfile:
    """What one site's scanner and protocol do to the images (not to the patients).

    Attributes:
        site: the site number.
        gain_median: median receiver gain (multiplies the per-exam log-normal gain).
        gain_sigma: sd of the log of the per-exam gain.
        snr: range of the per-exam signal-to-noise ratio against pre-contrast cortex.
        bias_sd: sd of the coefficients of the log bias field (second-order polynomial).
        fov_inplane_mm: range of the in-plane field of view (axes D and H).
        fov_slice_mm: range of the field of view along the slice axis (W).
        phase_seconds: nominal time of each contrast phase after bolus arrival.
        phase_jitter_s: sd of each phase's time around its nominal value.
    """

    site: int = 0
    gain_median: float = 1.0
    gain_sigma: float = 0.35
    snr: tuple[float, float] = (15.0, 40.0)
    bias_sd: float = 0.10
    fov_inplane_mm: tuple[float, float] = (170.0, 210.0)
    fov_slice_mm: tuple[float, float] = (150.0, 190.0)
    phase_seconds: dict[str, float] = field(
        default_factory=lambda: {"pre": 0.0, "arterial": 30.0, "tubular": 180.0})
    phase_jitter_s: dict[str, float] = field(
        default_factory=lambda: {"arterial": 4.0, "tubular": 15.0})

    def describe(self) -> dict[str, Any]:
        """The profile as plain JSON-able values (rounded for printing)."""
        out = asdict(self)
        return {k: (round(v, 3) if isinstance(v, float) else
                    [round(x, 1) for x in v] if isinstance(v, tuple) else
                    {n: round(x, 1) for n, x in v.items()} if isinstance(v, dict) else v)
                for k, v in out.items()}


#: The default site (today's simulator).
DEFAULT_SITE = SiteProfile()

#: Ranges from which the profile of a site N >= 1 is drawn (docs/simulate.md, "Sites").
SITE_RANGES: dict[str, tuple[float, float]] = {
    "gain_median": (0.35, 3.0),       # log-uniform: vendor/receiver scaling is arbitrary
    "gain_sigma": (0.20, 0.50),
    "snr_low": (8.0, 20.0),           # 1.5 T vs 3 T, coil, parallel imaging
    "snr_width": (10.0, 25.0),
    "bias_sd": (0.05, 0.25),          # body coil ... phased-array surface coil
    "fov_inplane_centre_mm": (160.0, 260.0),
    "fov_slice_centre_mm": (120.0, 220.0),
    "fov_halfwidth_mm": (10.0, 25.0),
    "arterial_s": (20.0, 40.0),       # fixed delay or bolus tracking
    "arterial_jitter_s": (3.0, 8.0),
    "tubular_s": (120.0, 300.0),
    "tubular_jitter_s": (10.0, 30.0),
}


def site_profile(site: int) -> SiteProfile:
    """The acquisition profile of site ``site`` (0: the default; N >= 1: drawn from N)."""
    if int(site) != site or site < 0:
        raise ValueError(f"site must be an integer >= 0, got {site!r}")
    if site == 0:
        return DEFAULT_SITE
    rng = np.random.default_rng(np.random.SeedSequence([0x517E, int(site)]))

    def u(name: str) -> float:
        lo, hi = SITE_RANGES[name]
        return float(rng.uniform(lo, hi))

    lo_g, hi_g = SITE_RANGES["gain_median"]
    gain = float(math.exp(rng.uniform(math.log(lo_g), math.log(hi_g))))
    gain_sigma = u("gain_sigma")
    snr_low = u("snr_low")
    snr = (snr_low, snr_low + u("snr_width"))
    bias = u("bias_sd")
    c_in, c_sl = u("fov_inplane_centre_mm"), u("fov_slice_centre_mm")
    half_in, half_sl = u("fov_halfwidth_mm"), u("fov_halfwidth_mm")
    art, art_j = u("arterial_s"), u("arterial_jitter_s")
    tub, tub_j = u("tubular_s"), u("tubular_jitter_s")
    return SiteProfile(
        site=int(site), gain_median=gain, gain_sigma=gain_sigma, snr=snr, bias_sd=bias,
        fov_inplane_mm=(c_in - half_in, c_in + half_in),
        fov_slice_mm=(c_sl - half_sl, c_sl + half_sl),
        phase_seconds={"pre": 0.0, "arterial": round(art, 1), "tubular": round(tub, 1)},
        phase_jitter_s={"arterial": art_j, "tubular": tub_j})
