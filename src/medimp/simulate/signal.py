"""From tissue fractions and per-tissue signals to the phase volumes of one exam.

The noiseless image of a phase is ``Σ_tissue fraction · signal`` (signal mixing gives partial
volume). Then the acquisition nuisances a real scanner adds, identical for the phases of one exam
(one coil, one receiver gain) but different between exams:

* a random global receiver gain (log-normal), so that absolute intensity means nothing;
* a smooth multiplicative bias field (coil sensitivity, second-order polynomial);
* Rician noise (magnitude of complex Gaussian noise, Gudbjartsson & Patz 1995) at an SNR drawn
  per exam.

Values are stored as non-negative 16-bit integers, like scanner output.
"""

from __future__ import annotations

import numpy as np

from medimp.simulate.site import DEFAULT_SITE, SiteProfile

__all__ = ["phase_volumes"]

_SCALE = 4000.0  # integer units of a unit-S0 signal at gain 1


def _bias_field(shape: tuple[int, int, int], rng: np.random.Generator,
                sd: float = 0.10) -> np.ndarray:
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x * x, y * y, z * z]
    coef = rng.normal(0, sd, len(terms))
    log_b = sum(c * t for c, t in zip(coef, terms, strict=True))
    return np.exp(log_b).astype(np.float32)


def phase_volumes(fractions: np.ndarray, phase_signal: np.ndarray,
                  rng: np.random.Generator, site: SiteProfile = DEFAULT_SITE
                  ) -> tuple[np.ndarray, dict[str, float]]:
    """Noisy int16 volumes of every phase of one exam.

    Args:
        fractions: [tissues, D, H, W] tissue fractions (sum to one per voxel).
        phase_signal: [phases, tissues] signal of each tissue at each phase.
        rng: draws gain, bias field and noise.
        site: the acquisition profile (gain, SNR range, bias-field strength).

    Returns:
        ``(volumes, nuisance)``: int16 [phases, D, H, W] and the drawn gain / SNR.
    """
    shape = fractions.shape[1:]
    flat = fractions.reshape(fractions.shape[0], -1)
    clean = (phase_signal.astype(np.float32) @ flat).reshape(-1, *shape)
    gain = float(np.exp(rng.normal(0.0, site.gain_sigma))) * site.gain_median
    snr = float(rng.uniform(*site.snr))
    bias = _bias_field(shape, rng, site.bias_sd)
    scale = _SCALE * gain
    sigma = scale * float(phase_signal[0, 0]) / snr  # noise relative to pre-contrast cortex
    img = clean * (bias * scale)
    real = img + np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(img.shape, dtype=np.float32)
    mag = np.sqrt(real * real + imag * imag)
    vols = np.clip(np.rint(mag), 0, np.iinfo(np.int16).max).astype(np.int16)
    return vols, {"gain": gain, "snr": snr}
