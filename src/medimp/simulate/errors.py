"""The simulate stage's errors (docs/ARCHITECTURE.md, "Errors")."""

from __future__ import annotations

from medimp.errors import MedimpError

__all__ = ["SimulationError"]


class SimulationError(MedimpError):
    """Invalid simulator arguments (sizes, patient count, output folder)."""
