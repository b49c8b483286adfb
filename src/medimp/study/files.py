"""Reading and writing ``study.yaml``: errors name the file and the field; writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from medimp._io import atomic_write_text
from medimp.errors import validation_problems
from medimp.study.errors import StudyError
from medimp.study.schema import Study

__all__ = ["load_study", "save_study"]


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read and validate ``study.yaml``; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"{path}: study.yaml not found; every cohort directory needs one "
                         "(see `medimp simulate` for an example)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raise StudyError(f"{path}: study.yaml is empty; `medimp init --cohort {path.parent}` "
                         "writes one from the cohort's tables and images (see docs/data.md)")
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: expected a mapping at the top level (exams:, phases:, "
                         f"variables:, ...); `medimp init --cohort {path.parent}` writes one "
                         "from the cohort's tables and images (see docs/data.md)")
    try:
        return Study.model_validate(raw)
    except ValidationError as exc:  # one line per problem, without pydantic's URLs
        problems = validation_problems(exc.errors())
        if len(problems) == 1:
            raise StudyError(f"{path}: {problems[0]}") from None
        lines = "".join(f"\n  - {p}" for p in problems)
        raise StudyError(f"{path}: {len(problems)} problems:{lines}", problems) from None


def save_study(study: Study, path: str | os.PathLike[str]) -> None:
    """Write ``study.yaml`` atomically (temp file in the same folder, then rename)."""
    text = yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    atomic_write_text(path, text)
