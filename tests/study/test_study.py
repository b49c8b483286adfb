from pathlib import Path

import pytest

from medimp._io import atomic_dir, atomic_write_text
from medimp.study import (
    Bin,
    Study,
    StudyError,
    TextVariable,
    default_study,
    load_study,
    save_study,
)


def test_default_study_roundtrip(tmp_path: Path) -> None:
    study = default_study()
    save_study(study, tmp_path / "study.yaml")
    again = load_study(tmp_path / "study.yaml")
    assert again == study
    assert again.exam_names == ["D15", "D30", "M3", "M12"]
    assert [b.upper for b in again.variable("gfr").bins] == [15, 30, 45, 60, None]
    assert [b.upper for b in again.variable("donor_age").bins] == [65, None]


def test_unknown_key_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="not found"):
        load_study(tmp_path / "study.yaml")
    (tmp_path / "study.yaml").write_text("name: x\nexams: []\nphases: []\nvariables: []\nfoo: 1\n")
    with pytest.raises(StudyError, match=r"study\.yaml"):
        load_study(tmp_path / "study.yaml")


@pytest.mark.parametrize("uppers", [[30, 15, None], [15, 15, None], [15, None, None], [15, 30]])
def test_bins_with_overlap_or_gap_are_refused(uppers: list) -> None:
    with pytest.raises(ValueError, match="bin"):
        TextVariable(name="gfr", table="exams", column="egfr", known_at="exam",
                     bins=[Bin(label=str(i), upper=u) for i, u in enumerate(uppers)],
                     slot="gfr", template="GFR {gfr}.")


def test_outcome_column_cannot_be_a_prompt_variable() -> None:
    study = default_study().model_dump()
    leak = {"name": "leak", "table": "patients", "column": "egfr_y2", "known_at": "transplant",
            "bins": [{"label": "x", "upper": None}], "slot": "leak", "template": "{leak}."}
    study["variables"].append(leak)
    with pytest.raises(ValueError, match="outcome"):
        Study.model_validate(study)


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "d") as tmp:
        (tmp / "x").write_text("partial")
        raise RuntimeError("boom")
    assert not (tmp_path / "d").exists()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_refuses_non_empty_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep").write_text("1")
    with pytest.raises(FileExistsError, match="overwrite"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["new"]


def test_atomic_files_get_umask_mode(tmp_path: Path) -> None:
    import os

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o644


def test_study_errors_are_one_line_per_problem_without_urls(simulated_cohort: Path,
                                                             tmp_path: Path) -> None:
    import shutil

    import yaml

    from medimp.data import validate_cohort

    cohort = tmp_path / "cohort"
    shutil.copytree(simulated_cohort, cohort)
    raw = yaml.safe_load((cohort / "study.yaml").read_text())
    raw["variables"][0]["bins"] = [{"label": "young", "upper": 5}]  # last bin must be open
    raw["variables"][1]["kind"] = "numbr"
    raw["outcomes"]["threshold"] = "high"
    (cohort / "study.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(StudyError) as info:
        load_study(cohort / "study.yaml")
    text = str(info.value)
    assert "pydantic" not in text and "http" not in text and "Value error," not in text
    lines = text.splitlines()
    assert lines[0] == f"{cohort / 'study.yaml'}: 3 problems:" and len(lines) == 4
    assert lines[1].startswith("  - variables.0: variable ") and "upper: null" in lines[1]
    assert lines[2].startswith("  - variables.1.kind: ")
    assert lines[3].startswith("  - outcomes.threshold: ")
    errors = validate_cohort(cohort, read_images=False).errors
    assert [e.file for e in errors] == ["study.yaml"] * 3  # one row per problem
