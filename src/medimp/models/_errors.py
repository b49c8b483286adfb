"""Errors raised by :mod:`medimp.models`."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = ["CheckpointError", "ModelError", "TextModelError"]


class ModelError(MedimpError):
    """A model cannot be built or used as asked (unknown name, bad option, bad input shape)."""


class TextModelError(ModelError):
    """A text-model path is not a usable Hugging Face model, or a text option is invalid."""


class CheckpointError(ModelError):
    """A checkpoint does not fit the model it is loaded into (missing/unexpected keys, shapes)."""
