"""Prompts over simulated cohorts: property-style checks with missing values, and the CLI on a
cohort directory read with medimp.data.read_cohort."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from medimp.cli.main import app
from medimp.prompts import (
    ParaphraseBank,
    build_prompts,
    build_prompts_from_tables,
    exam_words,
    load_bank,
)
from medimp.prompts.paraphrase import augment
from medimp.prompts.privacy import assert_safe_to_send, cohort_values
from medimp.simulate import simulate_clinical
from medimp.study import default_study

BAD = re.compile(r"\bnan\b|\bNone\b|\bFalse\b|\{\w*\}|  |^ | $", re.IGNORECASE)


def _with_holes(df: pd.DataFrame, cols: list[str], frac: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = df.copy()
    for c in cols:
        df[c] = df[c].astype(float)
        df.loc[rng.random(len(df)) < frac, c] = np.nan
    return df


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_simulated_tables_with_missing_values(seed: int, gpt_augs: Path) -> None:
    patients, exams, _truth = simulate_clinical(40, seed=seed)
    patients = _with_holes(patients, ["donor_age"], 0.3, seed)
    exams = _with_holes(exams, ["egfr", "creatinine_cv"], 0.3, seed + 10)
    study = default_study(gfr_binning="kdigo" if seed == 2 else "medimp")
    for bank in (None, load_bank(gpt_augs)):
        df = build_prompts_from_tables(study, exams, patients, bank=bank, seed=seed)
        assert not df.prompt.str.contains(BAD).any(), df.prompt[df.prompt.str.contains(BAD)]
        assert df.dtypes["variant"] == np.int64
        assert df.patient_id.map(type).eq(str).all() and df.exam.map(type).eq(str).all()
        # the number of sentences equals the number of known values, for every prompt
        for (pid, exam), grp in df.groupby(["patient_id", "exam"]):
            known = sum(w is not None for w in exam_words(study, exams, patients, pid,
                                                          exam).values())
            assert grp.prompt.str.count(r"\.(?: |$)").eq(known).all()
        assert set(df.variant) == set(range(10))
    # exams with every value missing get no prompt, all others get 10
    counts = df.groupby(["patient_id", "exam"]).size()
    assert set(counts) == {10}
    for pid, exam in zip(exams.patient_id, exams.exam, strict=True):
        words = exam_words(study, exams, patients, pid, exam)
        assert ((pid, exam) in counts.index) == any(w is not None for w in words.values())


def test_cohort_dir_build_and_cli(simulated_cohort: Path, tmp_path: Path) -> None:
    from medimp.data import read_cohort

    cohort = read_cohort(simulated_cohort)
    df = build_prompts(cohort)
    assert set(zip(df.patient_id, df.exam, strict=True)) == set(cohort.exam_keys())
    runner = CliRunner()
    out = tmp_path / "p.parquet"
    res = runner.invoke(app, ["prompts", "build", "--cohort", str(simulated_cohort), "--out",
                              str(out)])
    assert res.exit_code == 0, res.output
    again = pd.read_parquet(out)
    pd.testing.assert_frame_equal(again, df)
    pid, exam = cohort.exam_keys()[0]
    res = runner.invoke(app, ["prompts", "show", "--cohort", str(simulated_cohort), "--patient",
                              pid,
                              "--exam", exam])
    assert res.exit_code == 0, res.output
    assert f"patient {pid} exam {exam}" in res.output and "exams.csv:egfr" in res.output
    first = df[(df.patient_id == pid) & (df.exam == exam)].prompt.iloc[0]
    assert first[:30] in " ".join(res.output.split())
    res = runner.invoke(app, ["prompts", "show", "--cohort", str(simulated_cohort), "--patient",
                              "NOPE"])
    assert res.exit_code == 2 and "NOPE" in res.output
    res = runner.invoke(app, ["prompts", "build", "--cohort", str(tmp_path / "missing"), "--out",
                              str(tmp_path / "x.parquet")])
    assert res.exit_code == 1 and not (tmp_path / "x.parquet").exists()


def test_privacy_values_of_a_simulated_cohort(simulated_cohort: Path) -> None:
    from medimp.data import read_cohort

    c = read_cohort(simulated_cohort)
    forbidden = cohort_values({"patients.csv": c.patients, "exams.csv": c.exams})
    assert "deceased" in forbidden and "F" in forbidden
    study = default_study()
    assert_safe_to_send([v.template for v in study.variables], forbidden)  # templates are fine
    res = augment(study, "rules", n=3, forbidden=forbidden, min_similarity=None)
    assert res.bank.n == 3
    with pytest.raises(ValueError, match="donor_type"):
        assert_safe_to_send(["The Deceased donor was {age} years of age."], forbidden)
    with pytest.raises(ValueError, match=r"patient_id|digits"):
        assert_safe_to_send([f"Patient {c.patients.patient_id.iloc[0]} was {{age}}."], forbidden)


def test_exam_words_on_a_cohort(simulated_cohort: Path) -> None:
    from medimp.data import read_cohort

    c = read_cohort(simulated_cohort)
    pid, exam = c.exam_keys()[0]
    words = exam_words(c, pid, exam)
    assert words == exam_words(c.study, c.exams, c.patients, pid, exam)
    assert set(words) == {"donor_age", "gfr", "creatinine_variability"}
    assert words["donor_age"] in {"under 65", "65 or more"}
    with pytest.raises(TypeError):
        exam_words(c, pid)


def test_imported_original_cohort_uses_its_gpt_augs(medimp_original: Path, gpt_augs: Path,
                                                   tmp_path: Path) -> None:
    from medimp.data import read_cohort
    from medimp.data.cohort.import_medimp import import_medimp

    out = tmp_path / "orig"
    import_medimp(medimp_original / "dummy_mri_dataset",
                  medimp_original / "dummy_dataframes" / "df_clinicobiological_data.csv", out,
                  augs=gpt_augs,
                  fallback_volume=medimp_original / "dummy_mri_dataset" / "dummy_mri.nii.gz")
    cohort = read_cohort(out)
    df = build_prompts(cohort)
    assert set(df.variant) == set(range(10))
    bank = load_bank(gpt_augs, cohort.study)
    line1 = df[df.variant == 1].prompt
    assert line1.str.contains("At the time of transplant, the age of the kidney donor was").any()
    assert not df.prompt.str.contains(BAD).any()
    assert bank.n == 10
    # an explicit bank still wins over the cohort's own
    two = build_prompts(cohort, bank=ParaphraseBank.from_lines(bank.lines()[:2], cohort.study))
    assert set(two.variant) == {0, 1}
