"""Registry of pretraining objectives, created by name (after timm's ``_registry``/``_factory``).

An objective is a subclass of :class:`medimp.train.objectives.Objective` registered with
:func:`register_objective`; its registered name is the ``method`` of a ``PretrainConfig``.
Every module of this package whose name does not start with ``_`` is imported when the registry
is first used, so adding an objective means adding one file here (or registering a class from
anywhere before the config that names it is built).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from medimp.train.config import ConfigError

if TYPE_CHECKING:
    from medimp.train.config import PretrainConfig
    from medimp.train.objectives.base import Objective

__all__ = ["create_objective", "get_objective", "list_objectives", "register_objective"]

_OBJECTIVES: dict[str, type[Objective]] = {}
_LOADED: list[bool] = []  # non-empty once the built-in objectives are imported


def register_objective(cls: type[Objective] | None = None, *, name: str | None = None) -> Any:
    """Register an objective class under ``name`` (default: its ``name`` attribute).

    Usable as ``@register_objective`` or ``@register_objective(name="...")``.

    Raises:
        ConfigError: the name is empty, or already taken by another class.
    """

    def deco(c: type[Objective]) -> type[Objective]:
        key = name or getattr(c, "name", "")
        if not key or not key.isidentifier():
            raise ConfigError(f"objective {c.__qualname__}: give it a name (an identifier, "
                              "e.g. name = 'my_clip'), the value of `method` that selects it")
        if key in _OBJECTIVES and _OBJECTIVES[key] is not c:
            raise ConfigError(f"objective {key!r} is already registered "
                              f"({_OBJECTIVES[key].__module__}.{_OBJECTIVES[key].__qualname__})")
        c.name = key
        _OBJECTIVES[key] = c
        return c

    return deco(cls) if cls is not None else deco


def _ensure_builtin() -> None:
    # The built-in objectives register themselves when their modules are imported.
    if _LOADED:
        return
    import medimp.train.objectives as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")
    _LOADED.append(True)


def list_objectives() -> list[str]:
    """Names accepted as ``method`` (and by :func:`create_objective`), sorted."""
    _ensure_builtin()
    return sorted(_OBJECTIVES)


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    _ensure_builtin()
    try:
        return _OBJECTIVES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown method {name!r}; registered objectives: "
                          f"{', '.join(list_objectives())}") from None


def create_objective(name: str, config: PretrainConfig) -> Objective:
    """The objective ``name`` for a run of ``config`` (cheap: no data read, no tower built)."""
    return get_objective(name)(config)
