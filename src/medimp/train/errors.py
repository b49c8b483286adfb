"""The train stage's errors (docs/ARCHITECTURE.md, "Errors"); ``medimp.train.config`` and
``medimp.train`` re-export them."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = ["ConfigError", "TrainError", "TrainingInterrupted"]


class TrainError(MedimpError):
    """Pretraining cannot start or continue (bad cohort, run folder, checkpoint...)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training; the message says after which epoch and how to resume."""


class ConfigError(TrainError):
    """A pretraining config (file, override or checkpoint) is invalid; the message says why."""
