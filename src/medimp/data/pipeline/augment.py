"""Training-time augmentation: the original MEDIMP set as MONAI ``Rand*d`` transforms.

The original code augmented each volume with random flips, a random affine (rotation and
scaling), Gaussian smoothing, Gaussian noise and a random gamma (contrast). Here the same set is
described by :class:`AugmentConfig` (validated, loadable from YAML) and built into a MONAI
``Compose`` by :func:`build_augment`.

All phases of an exam are channels of one tensor, so every spatial transform (flip, affine) and
every intensity mapping (gamma) is drawn once and applied identically to all phases: the
registration between phases and the enhancement between them are kept. Randomness comes from
``set_random_state`` (see :class:`medimp.data.ExamDataset`, which seeds each item).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    Randomizable,
)
from monai.utils import MAX_SEED
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = ["AugmentConfig", "Reseeder", "build_augment", "load_augment_config"]

_Range = tuple[float, float]


class AugmentConfig(BaseModel):
    """Probabilities and ranges of the MEDIMP augmentations (every field has a default).

    A probability of 0 switches a transform off. Ranges are ``(low, high)``; angles in degrees,
    scales as a fraction (0.1 = ±10 %), translations in voxels, intensities in the normalised
    units of :class:`medimp.data.PreprocessConfig` (the pre-contrast phase spans about 0..1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flip_prob: float = Field(0.5, ge=0, le=1, description="Probability of flipping, per axis.")
    flip_axes: tuple[int, ...] = Field(
        (0, 1, 2), description="Spatial axes (0=D, 1=H, 2=W) that may be flipped, each on its own."
    )
    affine_prob: float = Field(0.5, ge=0, le=1, description="Probability of a random affine.")
    rotate_deg: float = Field(10.0, ge=0, le=180, description="Max rotation about each axis (°).")
    scale: float = Field(0.1, ge=0, lt=1, description="Max relative zoom in or out per axis.")
    translate_vox: float = Field(2.0, ge=0, description="Max shift per axis (voxels).")
    affine_padding: str = Field(
        "zeros", description="How the affine fills voxels from outside: zeros|border|reflection."
    )
    blur_prob: float = Field(0.2, ge=0, le=1, description="Probability of Gaussian smoothing.")
    blur_sigma: _Range = Field((0.25, 1.0), description="Range of the smoothing sigma (voxels).")
    noise_prob: float = Field(0.2, ge=0, le=1, description="Probability of Gaussian noise.")
    noise_std: float = Field(0.05, ge=0, description="Max standard deviation of the noise.")
    gamma_prob: float = Field(0.2, ge=0, le=1, description="Probability of a random gamma.")
    gamma: _Range = Field((0.7, 1.5), description="Range of the gamma exponent (contrast).")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        for name in ("blur_sigma", "gamma"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo <= 0:
                raise ValueError(f"{name} must be a positive (low, high) range, got {(lo, hi)}")
        if any(a not in (0, 1, 2) for a in self.flip_axes):
            raise ValueError(f"flip_axes must be among 0, 1, 2 (D, H, W), got {self.flip_axes}")
        if self.affine_padding not in ("zeros", "border", "reflection"):
            raise ValueError(
                f"affine_padding must be zeros, border or reflection, got {self.affine_padding!r}"
            )
        return self

    @classmethod
    def none(cls) -> AugmentConfig:
        """A configuration with every transform switched off."""
        return cls(flip_prob=0, affine_prob=0, blur_prob=0, noise_prob=0, gamma_prob=0)


def load_augment_config(path: str | os.PathLike[str]) -> AugmentConfig:
    """Read an :class:`AugmentConfig` from a YAML mapping (missing keys take their default).

    Raises:
        ValueError: the file is unreadable, not a mapping, or has an unknown or invalid key;
            the message names the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the augmentation config ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: the augmentation config must be a YAML mapping of options")
    try:
        return AugmentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid augmentation config:\n{exc}") from exc


def build_augment(config: AugmentConfig, keys: tuple[str, ...] = ("image",)) -> Compose:
    """Build the MONAI ``Compose`` of ``Rand*d`` transforms that ``config`` describes.

    The transforms act on channel-first tensors ``[C, D, H, W]`` under ``keys``; call
    ``set_random_state(seed)`` on the result for reproducible draws.
    """
    ks = list(keys)
    transforms: list[object] = []
    if config.flip_prob > 0:
        transforms += [
            RandFlipd(ks, prob=config.flip_prob, spatial_axis=a) for a in config.flip_axes
        ]
    if config.affine_prob > 0 and (config.rotate_deg or config.scale or config.translate_vox):
        rot = math.radians(config.rotate_deg)
        transforms.append(
            RandAffined(
                ks,
                prob=config.affine_prob,
                rotate_range=(rot, rot, rot),
                scale_range=(config.scale,) * 3,
                translate_range=(config.translate_vox,) * 3,
                mode="bilinear",
                padding_mode=config.affine_padding,
            )
        )
    if config.blur_prob > 0:
        s = tuple(config.blur_sigma)
        transforms.append(
            RandGaussianSmoothd(ks, sigma_x=s, sigma_y=s, sigma_z=s, prob=config.blur_prob)
        )
    if config.noise_prob > 0 and config.noise_std > 0:
        transforms.append(RandGaussianNoised(ks, prob=config.noise_prob, std=config.noise_std))
    if config.gamma_prob > 0:
        transforms.append(
            RandAdjustContrastd(ks, prob=config.gamma_prob, gamma=tuple(config.gamma))
        )
    return Compose(transforms)


def _randomizables(t: Any) -> list[Any]:
    """``t`` and the randomizable transforms it holds as attributes (MONAI's dictionary
    transforms seed their array transform with their own seed), depth first."""
    out = [t]
    for v in vars(t).values():
        if isinstance(v, Randomizable):
            out += _randomizables(v)
    return out


def _same_state(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.array_equal(a[1], b[1]) and tuple(a[2:]) == tuple(b[2:])


class Reseeder:
    """``compose.set_random_state(seed=s)``, with the same random streams, ~50× cheaper.

    MONAI builds a new ``np.random.RandomState`` for the compose and for every randomizable
    transform at each call (an OS entropy read and a seed sequence each: about a third of an
    augmented 32³ item's time); re-seeding the existing generators in place
    (``RandomState.seed``) gives the same states. The first call goes through MONAI (so that
    every transform owns its generator), then checks that re-seeding in place reproduces
    MONAI's states exactly for every generator; only then are later calls re-seeded in place,
    otherwise (a transform MONAI seeds differently) every call stays MONAI's own.
    """

    def __init__(self, compose: Compose) -> None:
        self.compose = compose
        self._plan: list[list[Any]] | None = None
        self._checked = False

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker checks again
        return {"compose": self.compose, "_plan": None, "_checked": False}

    def _in_place(self, seed: int, plan: list[list[Any]]) -> None:
        self.compose.R.seed(np.int64(seed) % MAX_SEED)
        for group in plan:
            s = np.int64(int(self.compose.R.randint(MAX_SEED, dtype="uint32"))) % MAX_SEED
            for t in group:
                t.R.seed(s)

    def __call__(self, seed: int) -> None:
        if self._plan is not None:
            self._in_place(seed, self._plan)
            return
        self.compose.set_random_state(seed=seed)
        if self._checked:
            return
        self._checked = True
        plan = [_randomizables(t) for t in self.compose.transforms
                if isinstance(t, Randomizable)]
        objects = [self.compose, *(t for group in plan for t in group)]
        if len({id(t.R) for t in objects}) != len(objects):
            return  # shared generators: re-seeding one in place would move the others
        want = [t.R.get_state() for t in objects]
        self._in_place(seed, plan)
        if all(_same_state(w, t.R.get_state()) for w, t in zip(want, objects, strict=True)):
            self._plan = plan
        else:
            self.compose.set_random_state(seed=seed)  # MONAI's own, as before the check
