"""The layout of ``medimp.data``: groups by role, no colliding module names, no file over 450
lines, and the old public module paths kept (with a warning) for one release."""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

import medimp.data
from tests.test_import_graph import import_graph

DATA = Path(medimp.data.__file__).resolve().parent
MAX_LINES = 450
#: the groups, left to right: a module imports its own group and the groups to its left
GROUPS = ("io", "cohort", "pipeline")
#: the one import to the right: validate's preprocessing check, inside that function
RIGHTWARD = {("medimp.data.cohort.validate", "medimp.data.pipeline.preprocess")}

#: old path -> new path, for the module paths docs/*.md documented as public
MOVED = {
    "medimp.data.features": "medimp.data.pipeline.features",
    "medimp.data.init": "medimp.data.cohort.init",
    "medimp.data.readers": "medimp.data.io.readers",
    "medimp.data.dynamic": "medimp.data.io.frames",
    "medimp.data.monai_reader": "medimp.data.io.monai_reader",
}


def _modules(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if p.stem != "__init__")


def test_groups_by_role() -> None:
    groups = sorted(p.name for p in DATA.iterdir() if (p / "__init__.py").is_file())
    assert groups == ["cohort", "io", "pipeline"]
    top = set(_modules(DATA)) - {"_errors", "_moved"}
    assert top == {old.rsplit(".", 1)[1] for old in MOVED}, "only the old paths' stubs"


def _group(module: str) -> int | None:
    parts = module.split(".")
    if parts[:2] != ["medimp", "data"] or len(parts) < 3 or parts[2] not in GROUPS:
        return None
    return GROUPS.index(parts[2])


def test_a_group_imports_only_the_groups_to_its_left() -> None:
    """``io`` reads no table and knows no preprocessing; ``cohort`` knows no pipeline."""
    wrong = {(module, target) for module, targets in import_graph().items()
             if (here := _group(module)) is not None
             for target in targets
             if (there := _group(target)) is not None and there > here}
    assert wrong == RIGHTWARD


@pytest.mark.parametrize("folder", GROUPS)
def test_no_two_modules_of_a_group_share_a_name(folder: str) -> None:
    """No ``geometry`` beside ``_geometry``, no ``dynamic`` beside ``dicom_dynamic``."""
    names = _modules(DATA / folder)
    plain = [n.lstrip("_") for n in names]
    assert len(set(plain)) == len(plain), names
    clashes = [(a, b) for a in plain for b in plain if a != b and b.endswith("_" + a)]
    assert not clashes, clashes


def test_no_file_over_the_line_limit() -> None:
    long = {str(p.relative_to(DATA)): n for p in DATA.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these by concept (at most {MAX_LINES} lines): {long}"


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_public_paths_still_import_with_a_warning(old: str, new: str) -> None:
    """Every name of the new module, the same object (``readers.register_reader`` registers in
    the one registry), with a warning naming the new path."""
    target = importlib.import_module(new)
    stub = importlib.import_module(old)
    names = list(target.__all__)
    assert names
    for name in names:
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            value = getattr(stub, name)
        assert value is getattr(target, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no attribute"):
            stub.__wrapped__  # noqa: B018 (probes of tools neither warn nor forward)

