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

from medimp._registry import Registry
from medimp.train.errors import ConfigError

if TYPE_CHECKING:
    from medimp.train.config import PretrainConfig
    from medimp.train.objectives.base import Objective

__all__ = ["create_objective", "get_objective", "list_objectives", "register_objective"]


def _load_builtin() -> None:
    # The built-in objectives register themselves when their modules are imported.
    import medimp.train.objectives as pkg

    for mod in pkgutil.iter_modules(pkg.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{mod.name}")


class _ObjectiveRegistry(Registry["type[Objective]"]):
    def duplicate_error(self, name: str) -> Exception:
        taken = self[name]
        return ConfigError(f"objective {name!r} is already registered "
                           f"({taken.__module__}.{taken.__qualname__})")


_OBJECTIVES = _ObjectiveRegistry("objective", ConfigError, load=_load_builtin,
                                 unknown="unknown method {name}; registered objectives: "
                                 "{choices}")


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
        _OBJECTIVES.add(key, c)
        c.name = key  # registered under a name= of its own: the class says so too
        return c

    return deco(cls) if cls is not None else deco


def list_objectives() -> list[str]:
    """Names accepted as ``method`` (and by :func:`create_objective`), sorted."""
    return _OBJECTIVES.names()


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as ``name``.

    Raises:
        ConfigError: unknown name (the message lists the registered ones).
    """
    return _OBJECTIVES.lookup(name)


def create_objective(name: str, config: PretrainConfig) -> Objective:
    """The objective ``name`` for a run of ``config`` (cheap: no data read, no tower built)."""
    return get_objective(name)(config)
