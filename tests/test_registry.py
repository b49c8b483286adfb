"""medimp._registry: the one register / list / look-up mechanism behind every registry."""

from __future__ import annotations

import pytest

from medimp._registry import Registry
from medimp.errors import MedimpError


class _Err(MedimpError):
    pass


def test_register_list_lookup_and_errors() -> None:
    loaded = []

    def load() -> None:
        loaded.append(1)
        reg.decorator(lambda: "b", name="beta")

    reg: Registry = Registry("widget", _Err, load=load)

    @reg.decorator
    def alpha() -> str:
        return "a"

    assert not loaded, "the built-ins are imported on first use, not at registration"
    assert reg.names() == ["alpha", "beta"] and loaded == [1]
    assert reg.lookup("alpha") is alpha
    reg.names()
    assert loaded == [1], "loaded once"
    reg.decorator(alpha)  # the same object again (a re-imported module): a no-op
    with pytest.raises(_Err, match="widget 'alpha' is already registered"):
        reg.decorator(lambda: "other", name="alpha")
    with pytest.raises(_Err, match=r"unknown widget 'gamma'; choose one of: alpha, beta"):
        reg.lookup("gamma")
    with pytest.raises(_Err, match="unknown widget"):
        reg.lookup(["not", "hashable"])


def test_ordered_entries_and_mapping_view() -> None:
    reg: Registry = Registry("reader", _Err, ordered=True,
                             unknown="no {what} {name} (have {choices})")
    reg.decorator(int, name="zeta", entry=lambda o: (o, {"opt": 1}))
    reg.decorator(str, name="alpha")
    assert reg.names() == ["zeta", "alpha"] and list(reg) == ["zeta", "alpha"]
    assert reg["zeta"] == (int, {"opt": 1}) and len(reg) == 2
    with pytest.raises(_Err, match="zeta"):  # the identity is the registered class
        reg.decorator(float, name="zeta", entry=lambda o: (o, {}))
    reg.decorator(int, name="zeta", entry=lambda o: (o, {}))
    with pytest.raises(_Err, match=r"no reader 'x' \(have zeta, alpha\)"):
        reg.lookup("x")
    assert reg.pop("alpha") is str and reg.names() == ["zeta"]


def test_every_registry_of_medimp_uses_it() -> None:
    from medimp.data.io.readers import READERS
    from medimp.evaluate.probes import _PROBES
    from medimp.models._registry import _IMAGE_ENCODERS
    from medimp.prompts.backends._registry import _BACKENDS
    from medimp.train.objectives._registry import _OBJECTIVES

    for reg in (READERS, _PROBES, _IMAGE_ENCODERS, _BACKENDS, _OBJECTIVES):
        assert isinstance(reg, Registry)
        assert reg.names(), reg
