"""Several pretraining runs of one method: expanding the sources and checking they are replicates.

``evaluate(cohort, {"medimp": [run_a, run_b, run_c], "image_ssl": "runs/image_ssl"}, ...)``:
a method's source may be a list of sources, a glob pattern, or a folder whose sub-folders are
runs (``RUN/seed0``, ``RUN/seed1``, ... as written by ``medimp pretrain --seeds``). Each becomes
a :class:`Member` of the method; runs of one method are pretraining replicates, so they must
share the encoder, the preprocessing, the training cohort and the training budget (refused
otherwise, naming the difference). A run trained on a cohort other than the one evaluated
gets a warning (``model.json`` ``cohort_fingerprint``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medimp.evaluate.errors import EvaluationError

__all__ = ["Member", "check_replicates", "cohort_warnings", "expand_methods"]

# model.json fields that replicates of one method must share (only the seed may differ)
_SHARED = (("method", "method"), ("image_encoder", "encoder"),
           ("preprocess", "preprocessing"), ("embed_dim", "embedding size"),
           ("phases", "phases"), ("cohort_fingerprint", "training cohort"),
           ("config.epochs", "epochs"))


@dataclass(frozen=True)
class Member:
    """One feature source of a method: a run dir, an embeddings file or a DataFrame."""

    method: str
    run: str | None  # None when the method has a single source
    source: Any

    @property
    def key(self) -> str:
        """Unique name of this member (``method`` or ``method#run``)."""
        return self.method if self.run is None else f"{self.method}#{self.run}"


def _is_run_dir(path: Path) -> bool:
    return (path / "model.json").is_file()


def _sources(src: Any) -> list[Any]:
    if isinstance(src, pd.DataFrame):
        return [src]
    if isinstance(src, list | tuple):
        return [s for item in src for s in _sources(item)]
    path = Path(src)
    if not path.exists() and glob.has_magic(str(src)):
        found = sorted(glob.glob(str(src)))  # noqa: PTH207 - absolute or relative patterns
        if not found:
            raise EvaluationError(f"{src}: the pattern matches no file or folder")
        return [Path(f) for f in found]
    if path.is_dir() and not _is_run_dir(path):
        seeds = sorted((d for d in path.iterdir() if d.is_dir() and _is_run_dir(d)),
                       key=lambda d: (len(d.name), d.name))
        if seeds:
            return seeds
    return [src]


def _labels(sources: list[Any]) -> list[str]:
    names = [Path(s).name if isinstance(s, str | os.PathLike) else "" for s in sources]
    if all(names) and len(set(names)) == len(names):
        return names
    return [f"run{i}" for i in range(len(sources))]


def expand_methods(methods: Mapping[str, Any]) -> list[Member]:
    """One :class:`Member` per source; a method with several sources gets run labels."""
    members: list[Member] = []
    for name, src in methods.items():
        sources = _sources(src)
        if not sources:
            raise EvaluationError(f"method {name!r}: no source given")
        if len(sources) == 1:
            members.append(Member(name, None, sources[0]))
            continue
        members += [Member(name, label, s)
                    for label, s in zip(_labels(sources), sources, strict=True)]
    return members


def _run_info(source: Any) -> dict[str, Any] | None:
    if not isinstance(source, str | os.PathLike) or not _is_run_dir(Path(source)):
        return None
    from medimp.train import load_run_info

    try:
        return load_run_info(source)
    except ValueError:  # a damaged model.json: reported when the run is embedded
        return None


def _field(info: dict[str, Any], dotted: str) -> Any:
    value: Any = info
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_replicates(members: list[Member]) -> None:
    """Refuse runs of one method that differ in more than the seed (names the difference)."""
    by_method: dict[str, list[tuple[Member, dict[str, Any]]]] = {}
    for m in members:
        info = _run_info(m.source) if m.run is not None else None
        if info is not None:
            by_method.setdefault(m.method, []).append((m, info))
    for method, runs in by_method.items():
        first, info0 = runs[0]
        for other, info in runs[1:]:
            for key, what in _SHARED:
                a, b = _field(info0, key), _field(info, key)
                if a is not None and b is not None and a != b:
                    raise EvaluationError(
                        f"method {method!r}: runs {first.source} and {other.source} differ in "
                        f"{what} ({a!r} vs {b!r}); runs of one method must be pretraining "
                        "replicates that differ only in the seed — give them different "
                        "method names to compare them")


def cohort_warnings(members: list[Member], fingerprint: str | None) -> list[str]:
    """A warning for each run whose training cohort is not the evaluated cohort."""
    out = []
    for m in members:
        info = _run_info(m.source)
        trained = None if info is None else info.get("cohort_fingerprint")
        if fingerprint and trained and trained != fingerprint:
            out.append(f"{m.key}: run {m.source} was trained on another cohort (fingerprint "
                       f"{trained}, this cohort {fingerprint}); fine for an external "
                       "validation, a mistake if it should be a replicate on this cohort")
    return out
