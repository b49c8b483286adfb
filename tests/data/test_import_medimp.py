"""import_medimp on the original layout fixture and on hand-made variants of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.data import (
    ImportMappingError,
    import_medimp,
    read_cohort,
    read_volume,
    validate_cohort,
)
from medimp.data.cohort.import_medimp import CREATININE_STD_BINS, map_phase
from tests.data.conftest import snapshot, write_dicom_series, write_nifti


@pytest.fixture(scope="module")
def orig(medimp_original: Path) -> dict[str, Path]:
    return {
        "root": medimp_original / "dummy_mri_dataset",
        "csv": medimp_original / "dummy_dataframes" / "df_clinicobiological_data.csv",
        "augs": medimp_original / "dummy_dataframes" / "gpt_augs.txt",
        "dummy": medimp_original / "dummy_mri_dataset" / "dummy_mri.nii.gz",
    }


@pytest.mark.parametrize(("name", "phases"), [
    ("1_WATER_AX_LAVA-Flex_ss_IV", ["pre"]),
    ("1_WATER_AX_LAVA-Flex_ss_iv", ["pre"]),
    ("2_WATER_AX_LAVA-Flex_ART", ["arterial"]),
    ("2_WATER_AX_LAVA-Flex_art", ["arterial"]),
    ("3_WATER_AX_LAVA-Flex_tub", ["tubular"]),
    ("3_WATER_AX_LAVA-Flex_TUB", ["tubular"]),
    ("4_PARTIAL_FOV", []),
    ("5_localizer", []),
    ("6_ss_IV_ART", ["pre", "arterial"]),
])
def test_phase_keyword_rules(name: str, phases: list[str]) -> None:
    assert map_phase(name) == phases


def test_fixture_without_images_refuses_and_writes_nothing(orig, tmp_path: Path) -> None:
    with pytest.raises(ImportMappingError, match="no image in any of the 90") as ei:
        import_medimp(orig["root"], orig["csv"], tmp_path / "c")
    assert "--fallback-volume" in str(ei.value)
    assert list(tmp_path.iterdir()) == []


def test_fixture_with_fallback_volume(orig, tmp_path: Path) -> None:
    out = tmp_path / "c"
    rep = import_medimp(orig["root"], orig["csv"], out, augs=orig["augs"],
                        fallback_volume=orig["dummy"])
    assert (rep.patients, rep.exams, rep.volumes, rep.fallback_volumes) == (10, 40, 90, 90)
    c = read_cohort(out)  # the result honours the cohort contract
    assert len(c.exam_keys()) == 30
    assert set(c.manifest["phase"]) == {"pre", "arterial", "tubular"}
    # every sequence points at the one copy of the dummy volume
    assert set(c.manifest["path"]) == {"images/_fallback/dummy_mri.nii.gz"}
    assert read_volume(c.volume_path("001-0003-C-C", "M3", "tubular")).shape == (192, 144, 96)
    # clinical values land where the wide table had them
    row = c.exam_row("001-0001-A-A", "D30")
    assert (row["egfr"], row["creatinine_std"], row["days_post_transplant"]) == (25, 123, 30)
    assert np.isnan(c.exam_row("001-0004-D-D", "D30")["egfr"])  # empty cell stays unknown
    assert c.patient_row("001-0008-H-H")["donor_age"] == 74
    assert c.patients[c.study.outcomes.columns()].isna().all().all()
    var = c.study.variable("creatinine_variability")
    assert var.column == "creatinine_std" and var.bins == CREATININE_STD_BINS
    # paraphrases copied byte for byte
    assert (out / "prompts" / "gpt_augs.txt").read_bytes() == orig["augs"].read_bytes()
    assert rep.augs_path == out / "prompts" / "gpt_augs.txt"
    # what could not be mapped is reported
    missing = {(n.patient, n.exam) for n in rep.notes if "missing exam" in n.problem}
    assert ("001-0002-B-B", "D30") in missing and ("001-0010-J-J", "M3") in missing
    assert len(missing) == 10
    assert any("90 volume(s) point at the fallback" in n.problem for n in rep.notes)
    assert any("outcomes missing" in n.problem for n in rep.notes)
    assert any("J15/J30" in n.problem for n in rep.notes)
    saved = json.loads((out / "import_report.json").read_text())
    assert saved["volumes"] == 90 and len(saved["notes"]) == len(rep.notes)
    # validate agrees: no error; the all-zero dummy is one constant-volume warning
    report = validate_cohort(out)
    assert report.ok
    assert sum("constant volume" in w.problem for w in report.warnings) == 1


def test_existing_cohort_is_kept_unless_overwrite(orig, tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        import_medimp(orig["root"], orig["csv"], out, fallback_volume=orig["dummy"])
    assert snapshot(out) == {"keep.txt": b"precious"}
    # a failing import with overwrite still leaves the old folder intact
    with pytest.raises(ImportMappingError):
        import_medimp(orig["root"], orig["csv"], out, overwrite=True)
    assert snapshot(out) == {"keep.txt": b"precious"}
    # --overwrite replaces an earlier import, never a folder holding the user's files
    # (hidden ones included)
    for name in ("keep.txt", ".git"):
        (out / name).write_text("precious")
        with pytest.raises(FileExistsError, match=rf"holds {re.escape(name)}.*move them away"):
            import_medimp(orig["root"], orig["csv"], out, fallback_volume=orig["dummy"],
                          overwrite=True)
        assert snapshot(out) == {name: b"precious"}
        (out / name).unlink()
    import_medimp(orig["root"], orig["csv"], out, fallback_volume=orig["dummy"])
    (out / ".medimp_cache").mkdir()  # what later stages add is part of the cohort
    import_medimp(orig["root"], orig["csv"], out, fallback_volume=orig["dummy"],
                  overwrite=True)
    assert (out / "manifest.csv").is_file() and not (out / ".medimp_cache").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temp folder left behind


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    """A small original-style layout with real images, J-labels and oddities."""
    root = tmp_path / "orig"
    for i, phase_dir in enumerate(["1_X_ss_IV", "2_X_Art", "3_X_TUB"]):
        write_nifti(root / "P1" / "J15" / phase_dir / "vol.nii.gz", seed=i)
    write_dicom_series(root / "P1" / "M3" / "1_X_SS_IV",
                       np.arange(6 * 6 * 4).reshape(6, 6, 4).astype(np.float32))
    (root / "P1" / "M3" / "9_localizer").mkdir(parents=True)
    write_nifti(root / "P1" / "M3" / "9_localizer" / "loc.nii.gz")
    write_nifti(root / "P2" / "j30" / "2_art" / "a.nii")
    (root / "P2" / "notes").mkdir(parents=True)
    csv = tmp_path / "clin.csv"
    pd.DataFrame({
        "patient": ["P1", "P2", "P3"],
        "GFR J15": ["20", "", "31"],
        "GFR D30": ["", "forty", "33"],
        "age_donor": ["70", "45", "50"],
        "std_creat_level J15": ["4", "", "7"],
        "hb D15": ["12", "", ""],
        "center": ["A", "B", "C"],
    }).to_csv(csv, index=False)
    return root, csv


def test_aliasing_dicom_and_unmapped_items(tmp_path: Path) -> None:
    root, csv = _layout(tmp_path)
    out = tmp_path / "c"
    rep = import_medimp(root, csv, out)
    c = read_cohort(out)
    assert c.exam_keys() == [("P1", "D15"), ("P1", "M3"), ("P2", "D30")]
    assert c.phases_of("P1", "D15") == ["pre", "arterial", "tubular"]
    # a DICOM series folder is copied as a folder and still reads
    dicom = c.volume_path("P1", "M3", "pre")
    assert dicom.is_dir() and read_volume(dicom).shape == (6, 6, 4)
    assert c.volume_path("P2", "D30", "arterial").name == "arterial.nii"
    assert c.exam_row("P1", "D15")["egfr"] == 20 and c.exam_row("P1", "D15")["hb"] == 12
    assert c.patient_row("P3")["center"] == "C"  # unknown columns are kept, not lost
    text = [str(n) for n in rep.notes]

    def has(*words: str) -> bool:
        return any(all(w in t for w in words) for t in text)

    assert has("J15 read as D15")
    assert has("GFR J15", "J15 read as D15")
    assert has("'9_localizer' matches no phase rule")
    assert has("'notes' is not an exam folder")
    assert has("P2", "'forty' is not a number")
    assert has("P3", "without an image folder")
    assert has("'hb D15' not known to the prompts")
    assert has("'center' not known to the prompts")
    assert validate_cohort(out).ok


def test_bad_arguments(orig, tmp_path: Path) -> None:
    with pytest.raises(ImportMappingError, match="image root folder not found"):
        import_medimp(tmp_path / "x", orig["csv"], tmp_path / "c")
    with pytest.raises(ImportMappingError, match="clinical CSV not found"):
        import_medimp(orig["root"], tmp_path / "x.csv", tmp_path / "c")
    with pytest.raises(ImportMappingError, match="not a NIfTI"):
        import_medimp(orig["root"], orig["csv"], tmp_path / "c", fallback_volume=orig["csv"])
    bad = tmp_path / "bad.csv"
    bad.write_text("name,GFR D15\nP1,3\n")
    with pytest.raises(ImportMappingError, match="no patient column"):
        import_medimp(orig["root"], bad, tmp_path / "c", fallback_volume=orig["dummy"])
    assert not (tmp_path / "c").exists()


def test_cli_import_then_validate(orig, tmp_path: Path) -> None:
    out = tmp_path / "c"
    args = ["import-medimp", str(orig["root"]), "--clinical", str(orig["csv"]), "--out",
            str(out), "--augs", str(orig["augs"]), "--fallback-volume", str(orig["dummy"])]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "10 patients, 40 exams, 90 volumes" in " ".join(res.output.split())
    res = CliRunner().invoke(app, args)  # out exists now
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = CliRunner().invoke(app, [*args, "--overwrite", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["fallback_volumes"] == 90
    assert CliRunner().invoke(app, ["validate", "--cohort", str(out)]).exit_code == 0


def test_cli_import_without_images_exit_1(orig, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["import-medimp", str(orig["root"]), "--clinical",
                                   str(orig["csv"]), "--out", str(tmp_path / "c")])
    assert res.exit_code == 1 and "--fallback-volume" in res.output


def test_imported_original_feeds_preprocessing_without_nan(orig, tmp_path: Path) -> None:
    """The all-zero dummy behind every imported sequence is preprocessed to finite zeros."""
    from medimp.data.pipeline.preprocess import PreprocessConfig, load_exam_volume

    out = tmp_path / "c"
    import_medimp(orig["root"], orig["csv"], out, fallback_volume=orig["dummy"])
    c = read_cohort(out)
    config = PreprocessConfig(spacing=(12.0, 12.0, 12.0), shape=(16, 16, 16))
    image, mask = load_exam_volume(c, *c.exam_keys()[0], config)
    assert image.shape == (3, 16, 16, 16) and mask.tolist() == [True, True, True]
    assert np.isfinite(image).all() and float(np.abs(image).max()) == 0.0


def test_latin1_clinical_csv_names_the_line(orig, tmp_path: Path) -> None:
    lines = orig["csv"].read_text(encoding="utf-8").splitlines()
    lines = [f"{ln},{'center' if i == 0 else 'Necker'}" for i, ln in enumerate(lines)]
    lines[3] = lines[3].replace("Necker", "Hôpital Necker")  # saved by a Latin-1 editor
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    res = CliRunner().invoke(app, ["import-medimp", str(orig["root"]), "--clinical",
                                   str(latin), "--out", str(tmp_path / "c"),
                                   "--fallback-volume", str(orig["dummy"])])
    assert res.exit_code == 1, res.output
    (line,) = res.stderr.strip().splitlines()
    assert f"{latin}:4" in line and "line 4 is not UTF-8" in line and "Latin-1" in line
    assert not (tmp_path / "c").exists()
