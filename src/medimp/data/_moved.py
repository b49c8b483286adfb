"""Old module paths of ``medimp.data``, kept for one release after the package was grouped
into ``io``, ``cohort`` and ``pipeline``.

Each old module documented as public (``medimp.data.features``, ``.init``, ``.readers``,
``.dynamic``, ``.monai_reader``) is a stub whose names are those of the new module, the same
objects (a reader registered through the old path is registered), with a
``DeprecationWarning`` that names the new path.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any


def forward(old: str, new: ModuleType) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the stub ``old`` that reads every name from ``new``."""

    def getattr_(name: str) -> Any:
        if name.startswith("__") and name != "__all__":
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        what = "its names" if name == "__all__" else name
        warnings.warn(
            f"{old} moved to {new.__name__} (import {what} from there); the old path will be "
            "removed in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(new, name)

    return getattr_
