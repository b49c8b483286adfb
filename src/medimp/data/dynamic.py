"""Moved to :mod:`medimp.data.io.frames`; this path is kept for one release (a
``DeprecationWarning`` names the new one)."""

from medimp.data._moved import forward
from medimp.data.io import frames as _new

__getattr__ = forward(__name__, _new)
