"""One registry mechanism (name -> entry) for every "created by name" choice of medimp.

Image encoders, image readers, paraphrase backends, probes and pretraining objectives are each
registered under a name by a decorator, listed, and looked up by name; an unknown name is an
error that lists the registered choices, and a name taken by another entry is refused. This
module holds that logic once (after timm's ``_registry``); each stage keeps its own public
functions (``register_image_encoder``, ``list_readers``, ``create_probe``...) and its own error
class, as thin wrappers around a :class:`Registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(MutableMapping[str, T], Generic[T]):
    """Name -> entry, with the built-in entries imported on first use.

    Args:
        what: what an entry is, for messages (``"image encoder"``, ``"probe"``).
        error: builds the stage's exception from a one-line message.
        load: imports the modules whose decorators register the built-in entries; called
            once, before the first listing or lookup.
        ordered: list names in registration order (e.g. readers, tried in that order) instead
            of sorted.
        unknown: the message for an unknown name; ``{what}``, ``{name}`` (the repr of the name)
            and ``{choices}`` (the registered names, comma-separated) are filled in.
    """

    def __init__(self, what: str, error: Callable[[str], Exception], *,
                 load: Callable[[], None] | None = None, ordered: bool = False,
                 unknown: str = "unknown {what} {name}; choose one of: {choices}") -> None:
        self.what = what
        self.error = error
        self.ordered = ordered
        self.unknown = unknown
        self._load = load
        self._loaded = load is None
        self._entries: dict[str, T] = {}
        self._objects: dict[str, object] = {}  # what was registered (an entry may wrap it)

    # ----------------------------------------------------------------- registration
    def add(self, name: str, entry: T, *, obj: object = None) -> T:
        """Register ``entry`` under ``name``; ``obj`` is what the decorator received (default:
        ``entry``). Registering the same object again is a no-op (a re-imported module).

        Raises:
            ``error``: ``name`` is taken by another object.
        """
        obj = entry if obj is None else obj
        if name in self._objects and self._objects[name] is not obj:
            raise self.duplicate_error(name)
        self._entries[name] = entry
        self._objects[name] = obj
        return entry

    def decorator(self, target: Any = None, *, name: str | None = None,
                  default_name: Callable[[Any], str] = lambda o: o.__name__,
                  entry: Callable[[Any], T] = lambda o: o) -> Any:
        """``@register`` or ``@register(name="...")``: registers ``entry(target)`` under
        ``name`` (default ``default_name(target)``) and returns ``target`` unchanged."""

        def deco(o: Any) -> Any:
            self.add(name or default_name(o), entry(o), obj=o)
            return o

        return deco(target) if target is not None else deco

    # ----------------------------------------------------------------------- lookup
    def names(self) -> list[str]:
        """The registered names, sorted (or in registration order when ``ordered``)."""
        self.ensure_loaded()
        return list(self._entries) if self.ordered else sorted(self._entries)

    def lookup(self, name: str) -> T:
        """The entry registered as ``name``.

        Raises:
            ``error``: unknown name; the message lists the registered choices.
        """
        self.ensure_loaded()
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise self.unknown_error(name) from None

    def ensure_loaded(self) -> None:
        """Import the built-in entries (once)."""
        if not self._loaded:
            self._loaded = True  # first: the imported modules register into this registry
            try:
                self._load()  # type: ignore[misc]
            except BaseException:
                self._loaded = False
                raise

    # ----------------------------------------------------------------------- errors
    def unknown_error(self, name: object) -> Exception:
        """The exception for an unknown ``name`` (naming the registered choices)."""
        return self.error(self.unknown.format(what=self.what, name=repr(name),
                                              choices=", ".join(self.names())))

    def duplicate_error(self, name: str) -> Exception:
        """The exception for a ``name`` that another object holds already."""
        return self.error(f"{self.what} {name!r} is already registered")

    # ------------------------------------------------- the mapping view (name -> entry)
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self.add(name, entry)

    def __delitem__(self, name: str) -> None:
        del self._entries[name]
        del self._objects[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)})"
