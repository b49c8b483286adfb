"""A clinic's own export reaches a report with no conversion script: ``medimp init`` ->
``validate`` -> ``prompts`` -> ``pretrain`` -> ``embed`` -> ``evaluate`` (the worked example
of docs/data.md).

The export (``tests/fixtures/clinic_export`` + the simulated volumes laid out lab-style, see
``tests/data/_clinic.py``) has column names with spaces, units and accents, creatinine in
µmol/L, dd/mm/yyyy dates instead of day counts, Yes/No, and NA / n/a / empty for unknown.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.data import read_cohort
from medimp.data.cohort.init import init_cohort
from medimp.study import load_study
from tests.data._clinic import EXPORT, clinic_export, clinic_id

SIM = (24, (16, 16, 16), 0)  # the cohort tests/fixtures/clinic_export was made from
TINY = """\
image_encoder: {name: tiny_cnn_3d, kwargs: {widths: [4, 8, 16]}}
embed_dim: 16
epochs: 1
batch_size: 8
val_fraction: 0.25
preprocess: {shape: [16, 16, 16]}
augment: null
optim: {lr: 0.001, warmup_epochs: 0}
log_every_n_steps: 1
"""


@pytest.fixture
def export(make_cohort, tmp_path):
    sim = make_cohort(*SIM)
    return sim, clinic_export(sim, tmp_path / "clinic")


def test_init_maps_the_clinic_columns_and_the_image_tree(export) -> None:
    sim, folder = export
    result = init_cohort(folder)
    study = load_study(folder / "study.yaml")
    assert study.columns == {"Patient ID": "patient_id", "Visit": "exam"}
    assert study.values == {"Graft loss": {"No": 0.0, "Yes": 1.0}}
    assert study.units["Créatinine (µmol/L)"] == "µmol/L"
    assert study.units["Âge du donneur (années)"] == "years"
    assert study.dates is not None and study.dates.format == "%d/%m/%Y"
    assert (study.dates.transplant, study.dates.exam, study.dates.graft_loss,
            study.dates.followup) == ("Transplant date", "Exam date", "Graft loss date",
                                      "Last follow-up date")
    assert {v.name: v.column for v in study.variables} == {
        "donor_age": "Âge du donneur (années)", "gfr": "eGFR (mL/min/1.73m2)",
        "creatinine_variability": "Creatinine CV (%)"}
    assert study.outcomes.egfr == {h: f"eGFR {h} years (mL/min/1.73m2)" for h in (2, 3, 4)}
    assert study.outcomes.graft_loss == "Graft loss"
    assert [(e.name, e.days) for e in study.exams] == [("J15", 15), ("J30", 30), ("M3", 91),
                                                       ("M12", 365)]
    assert set(study.missing_values) == {"", "NA", "n/a"}
    text = (folder / "study.yaml").read_text(encoding="utf-8")
    assert "# review" in text and "Patient ID: patient_id   # review" in text
    # the manifest: every simulated volume, found by its lab path; the localiser is left out
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str)
    assert len(manifest) == len(pd.read_csv(sim / "manifest.csv"))
    assert dict(result.layout.patterns) == {
        "imaging/sub-{patient}/ses-{exam}/{phase}.nii.gz": len(manifest)}
    assert result.layout.phase_words == {"DCE_ss_IV": "pre", "DCE_ART": "arterial",
                                         "DCE_tub": "tubular"}
    [(path, why)] = result.layout.unmatched
    assert path.endswith("localizer.nii.gz") and "no phase" in why
    # a second init does not replace the user's edits
    with pytest.raises(ValueError, match=r"exists.*--overwrite"):
        init_cohort(folder)


def test_the_export_reads_as_the_simulated_cohort(export) -> None:
    """Units, dates, Yes/No and NA spellings are converted on read: the values are the
    simulator's own."""
    sim, folder = export
    init_cohort(folder)
    c = read_cohort(folder)
    truth_e = pd.read_csv(sim / "exams.csv", dtype={"patient_id": str})
    truth_p = pd.read_csv(sim / "patients.csv", dtype={"patient_id": str})
    truth_e["patient_id"] = truth_e["patient_id"].map(clinic_id)
    truth_p["patient_id"] = truth_p["patient_id"].map(clinic_id)
    visit = {"D15": "J15", "D30": "J30", "M3": "M3", "M12": "M12"}
    truth_e["exam"] = truth_e["exam"].map(visit)
    e = c.exams.merge(truth_e, on=["patient_id", "exam"])
    assert len(e) == len(truth_e)
    np.testing.assert_allclose(e["days_post_transplant_x"], e["days_post_transplant_y"])
    creat = e["Créatinine (µmol/L)"].to_numpy(dtype=float)  # now mg/dL
    known = np.isfinite(creat)
    assert 0 < (~known).sum() < 10  # the n/a cells
    np.testing.assert_allclose(creat[known], e["creatinine_mg_dl"][known], atol=0.01)
    p = c.patients.merge(truth_p, on="patient_id")
    np.testing.assert_array_equal(p["Graft loss"], p["graft_loss"])
    np.testing.assert_allclose(p["followup_days_x"], p["followup_days_y"])
    np.testing.assert_allclose(p["graft_loss_days_x"], p["graft_loss_days_y"])
    np.testing.assert_allclose(p["eGFR 2 years (mL/min/1.73m2)"], p["egfr_y2"])
    assert c.value_at("gfr", "001", "M3") == pytest.approx(
        float(truth_e.query("patient_id == '001' and exam == 'M3'")["egfr"].iloc[0]))


@pytest.mark.slow
def test_from_a_clinic_export_to_a_report(export, tmp_path, monkeypatch) -> None:
    """The worked example of docs/data.md, command by command."""
    _, folder = export
    assert folder == tmp_path / "clinic"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(TINY, encoding="utf-8")
    runner = CliRunner()

    def medimp(*args: str) -> str:
        res = runner.invoke(app, list(args))
        assert res.exit_code == 0, f"medimp {' '.join(args)}:\n{res.output}"
        assert "Traceback" not in res.output and "deprecated" not in res.output
        return res.output

    out = medimp("init", "--cohort", "clinic")
    assert "imaging/sub-{patient}/ses-{exam}/{phase}.nii.gz" in out
    out = medimp("validate", "--cohort", "clinic")
    assert "clinic: OK" in out and "still marked '# review'" in out
    assert "volumes per phase:  pre: 76, arterial: 76, tubular: 74" in out
    medimp("prompts", "build", "--cohort", "clinic", "--out", "prompts.parquet")
    prompts = pd.read_parquet("prompts.parquet")
    assert prompts["prompt"].str.contains("GFR").any()
    medimp("pretrain", "--cohort", "clinic", "--out", "runs/medimp", "--config", "tiny.yaml",
           "--method", "medimp", "--set", f"cache_dir={tmp_path / 'cache'}")
    medimp("embed", "--run", "runs/medimp", "--cohort", "clinic", "--out", "embeddings.parquet",
           "--cache",
           str(tmp_path / "cache"))
    assert len(pd.read_parquet("embeddings.parquet")) > 0
    out = medimp("evaluate", "--cohort", "clinic", "--runs", "medimp=runs/medimp", "--out",
                 "eval", "--folds", "3", "--repeats", "1", "--no-knn")
    assert (tmp_path / "eval" / "report.html").is_file()
    assert "status_y2" in out
    # a late failure (here: retrieval reading a hand-edited model.json) is a skipped entry
    # with its reason; the rest of the evaluation is written
    shutil.copytree("runs/medimp", "runs/edited")
    info = json.loads(Path("runs/edited/model.json").read_text(encoding="utf-8"))
    info["val_patients"] = 5
    Path("runs/edited/model.json").write_text(json.dumps(info), encoding="utf-8")
    medimp("evaluate", "--cohort", "clinic", "--runs", "medimp=runs/edited", "--out", "eval2",
           "--folds", "3", "--repeats", "1", "--no-knn", "--no-survival", "--no-report")
    metrics = json.loads(Path("eval2/metrics.json").read_text(encoding="utf-8"))
    [late] = [s for s in metrics["skipped"] if s["task"] == "retrieval"]
    assert late["reason"].startswith("retrieval failed (TypeError:")
    assert metrics["records"]
    # output folders follow the user's umask, like the run folder
    assert (tmp_path / "eval").stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_fixture_is_what_a_clinic_exports() -> None:
    """Guard: the fixture keeps the traits the tests rely on."""
    p = (EXPORT / "patients.csv").read_text(encoding="utf-8")
    e = (EXPORT / "exams.csv").read_text(encoding="utf-8")
    assert "Âge du donneur (années)" in p and "Créatinine (µmol/L)" in e
    assert ",Yes," in p and ",No," in p and ",NA," in p and ",n/a," in e and ",," in p
    assert "/20" in e.splitlines()[1]  # dd/mm/yyyy


def test_init_refuses_what_it_cannot_read_naming_the_file(tmp_path) -> None:
    from medimp.data import MedimpDataError

    folder = tmp_path / "export"
    folder.mkdir()
    with pytest.raises(MedimpDataError, match=r"patients.csv not found .*one row per patient"):
        init_cohort(folder)
    text = (EXPORT / "patients.csv").read_text(encoding="utf-8")
    (folder / "patients.csv").write_bytes(text.encode("latin-1"))
    shutil.copy(EXPORT / "exams.csv", folder / "exams.csv")
    with pytest.raises(MedimpDataError, match=r"patients.csv:1: line 1 is not UTF-8.*iconv"):
        init_cohort(folder)
    assert not (folder / "study.yaml").exists() and not (folder / "manifest.csv").exists()
