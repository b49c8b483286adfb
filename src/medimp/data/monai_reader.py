"""Moved to :mod:`medimp.data.io.monai_reader`; this path is kept for one release (a
``DeprecationWarning`` names the new one)."""

from medimp.data._moved import forward
from medimp.data.io import monai_reader as _new

__getattr__ = forward(__name__, _new)
