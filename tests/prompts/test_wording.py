"""Clinician wording of the prompts (docs/prompts.md): ranges, units, grammar, same facts."""

from __future__ import annotations

import numpy as np
import pytest

from medimp.data import read_cohort
from medimp.prompts import build_prompts_from_tables, exam_words
from medimp.prompts.templates import check_prompt
from medimp.prompts.wording import (
    clinician_study,
    exam_phrase,
    nearest_description_accuracy,
    range_bins,
    study_for,
)
from medimp.study import default_study


def test_range_bins_state_ranges_and_units() -> None:
    labels = [b.label for b in range_bins([15, 30, 45, 60], " mL/min/1.73 m²")]
    assert labels == ["below 15 mL/min/1.73 m²", "15-29 mL/min/1.73 m²",
                      "30-44 mL/min/1.73 m²", "45-59 mL/min/1.73 m²",
                      "60 mL/min/1.73 m² or above"]
    pct = [b.label for b in range_bins([5, 10], "%", integer=False)]
    assert pct == ["less than 5%", "5 to under 10%", "10% or more"]


@pytest.mark.parametrize(("days", "phrase"), [(15, "two-week"), (30, "one-month"),
                                              (91, "three-month"), (365, "one-year")])
def test_exam_phrase(days: int, phrase: str) -> None:
    assert exam_phrase(days) == phrase


def test_clinician_prompts_read_well_and_state_the_same_facts(simulated_cohort) -> None:
    cohort = read_cohort(simulated_cohort)
    original = cohort.study
    clinician = clinician_study(original)
    keys = [(str(p), str(e)) for p, e in cohort.exam_keys()][:20]
    df = build_prompts_from_tables(clinician, cohort.exams, cohort.patients, keys=keys)
    for prompt in df["prompt"]:
        check_prompt(prompt)
        assert "years of age" not in prompt and "fluctuations" not in prompt
    first = df[df["variant"] == 0]["prompt"].iloc[0]
    assert "mL/min/1.73 m²" in first
    assert "-week check-up" in first or "-month check-up" in first
    # same cut points: the two wordings bin every exam alike (same bin index per variable)
    for key in keys:
        a = exam_words(original, cohort.exams, cohort.patients, *key)
        b = exam_words(clinician, cohort.exams, cohort.patients, *key)
        for var_o, var_c in zip(original.variables, clinician.variables, strict=True):
            if a[var_o.name] is None:
                assert b[var_c.name] is None
                continue
            ia = [x.label for x in var_o.bins].index(a[var_o.name])
            ib = [x.label for x in var_c.bins].index(b[var_c.name])
            assert ia == ib


def test_fine_bins_and_unknown_wording() -> None:
    study = default_study()
    fine = study_for(study, "clinician_fine")
    assert len(fine.variable("gfr").bins) > len(study.variable("gfr").bins)
    assert study_for(study, "original") is study
    with pytest.raises(ValueError, match="wording"):
        study_for(study, "poetic")


def test_nearest_description_accuracy() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 5
    separated = centres[:, None, :] + 0.1 * rng.normal(size=(4, 6, 4))
    assert nearest_description_accuracy(separated) == 1.0
    # the variant's wording dominates: every description's variant i is the same vector
    style = rng.normal(size=(6, 4))
    confused = np.broadcast_to(style[None], (4, 6, 4)) + 1e-3 * rng.normal(size=(4, 6, 4))
    assert nearest_description_accuracy(confused) < 0.6
    with pytest.raises(ValueError):
        nearest_description_accuracy(np.zeros((1, 3, 2)))


def test_cli_build_with_clinician_wording(simulated_cohort, tmp_path, medimp_original) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from medimp.cli.main import app

    runner = CliRunner()
    out = tmp_path / "p.parquet"
    res = runner.invoke(app, ["prompts", "build", "--cohort", str(simulated_cohort), "--out",
                              str(out),
                              "--wording", "clinician_fine"])
    assert res.exit_code == 0, res.output
    prompts = pd.read_parquet(out)["prompt"]
    assert prompts.str.contains("mL/min/1.73 m²").any()
    gpt = medimp_original / "dummy_dataframes" / "gpt_augs.txt"
    res = runner.invoke(app, ["prompts", "build", "--cohort", str(simulated_cohort), "--out",
                              str(out),
                              "--wording", "clinician", "--bank", str(gpt)])
    assert res.exit_code == 2 and "one or the other" in res.output
    res = runner.invoke(app, ["prompts", "build", "--cohort", str(simulated_cohort), "--out",
                              str(out),
                              "--wording", "poetic"])
    assert res.exit_code == 2 and "choose one of" in res.output
