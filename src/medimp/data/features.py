"""Moved to :mod:`medimp.data.pipeline.features`; this path is kept for one release (a
``DeprecationWarning`` names the new one)."""

from medimp.data._moved import forward
from medimp.data.pipeline import features as _new

__getattr__ = forward(__name__, _new)
