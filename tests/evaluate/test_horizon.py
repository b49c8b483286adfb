"""No exam at or after the horizon (or after the graft loss) feeds a task, and grafts lost
without a date are counted as documented (docs/evaluate.md, "Tasks")."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from medimp.evaluate import EvalConfig, evaluate, make_labels, survival_table
from medimp.evaluate.config import EvalConfig as Config
from medimp.evaluate.inputs import before_horizon, exam_cutoffs, load_inputs
from medimp.study import ExamSpec, load_study, save_study
from tests.evaluate.conftest import truth_embeddings

QUICK = {"n_splits": 3, "repeats": 1, "levels": ["patient_mean", "patient_latest"],
         "probes": ["logistic"], "horizons": [2], "survival": False, "retrieval": False,
         "oracle": False, "calibration": False, "pca_ks": [0, 2], "Cs": [0.1, 1.0]}


def _add_m24_exam(src, dst) -> None:
    """A copy of the cohort with one more exam per patient at 2 years whose eGFR is the
    2-year outcome itself (and images, latent truth): a leak if it ever fed status_y2."""
    shutil.copytree(src, dst)
    study = load_study(dst / "study.yaml")
    study.exams.append(ExamSpec(name="M24", days=730, phrase="second year"))
    save_study(study, dst / "study.yaml")
    pats = pd.read_csv(dst / "patients.csv", dtype={"patient_id": str})
    exams = pd.read_csv(dst / "exams.csv", dtype={"patient_id": str})
    m12 = exams[exams["exam"] == "M12"].merge(pats[["patient_id", "egfr_y2"]], on="patient_id")
    m24 = m12.assign(exam="M24", days_post_transplant=730,
                     egfr=m12["egfr_y2"].fillna(m12["egfr"])).drop(columns="egfr_y2")
    pd.concat([exams, m24]).to_csv(dst / "exams.csv", index=False)
    truth = pd.read_csv(dst / "truth.csv", dtype={"patient_id": str})
    t24 = truth[truth["exam"] == "M12"].merge(m24[["patient_id", "egfr"]], on="patient_id")
    t24 = t24.assign(exam="M24", gfr_true=t24["egfr"]).drop(columns="egfr")
    pd.concat([truth, t24]).to_csv(dst / "truth.csv", index=False)
    man = pd.read_csv(dst / "manifest.csv", dtype={"patient_id": str})
    new = man[man["exam"] == "M12"].copy()
    for row in new.itertuples():
        target = dst / row.path.replace("/M12/", "/M24/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(dst / row.path, target)
    new["exam"] = "M24"
    new["path"] = new["path"].str.replace("/M12/", "/M24/")
    pd.concat([man, new]).to_csv(dst / "manifest.csv", index=False)


@pytest.mark.slow
def test_an_exam_at_the_horizon_cannot_leak_the_label(eval_cohort, tmp_path) -> None:
    leaky = tmp_path / "leaky"
    _add_m24_exam(eval_cohort, leaky)
    runs = {"medimp": [truth_embeddings(eval_cohort, 1.0, seed=s) for s in (0, 1)]}
    m24 = pd.read_csv(leaky / "exams.csv", dtype={"patient_id": str}).query("exam == 'M24'")
    leak = (m24["egfr"] - m24["egfr"].mean()).to_numpy() / m24["egfr"].std()
    leaky_runs = {"medimp": []}
    for df in runs["medimp"]:  # the same embeddings, plus M24 rows that show the outcome
        rows = df[df["exam"] == "M12"].set_index("patient_id").loc[m24["patient_id"]]
        rows = rows.reset_index().assign(exam="M24", e0=3 * leak)
        leaky_runs["medimp"].append(pd.concat([df, rows], ignore_index=True))
    base = evaluate(eval_cohort, runs, tmp_path / "base", EvalConfig(**QUICK))
    res = evaluate(leaky, leaky_runs, tmp_path / "leak", EvalConfig(**QUICK))
    [task] = res.metrics.header.tasks
    assert task.n_exams_dropped == task.n_known  # one M24 exam per evaluated patient
    assert base.metrics.header.tasks[0].n_exams_dropped == 0
    key = lambda r: (r.method, r.run, r.level, r.probe)  # noqa: E731
    before = {key(r): r.auc for r in base.metrics.records}
    after = {key(r): r.auc for r in res.metrics.records}
    # clinical_only would read the 2-year eGFR from the M24 exam, medimp its latent truth:
    # with the cut-off every AUC is the one of the cohort without that exam
    assert after == pytest.approx(before, abs=1e-12)
    # so is the eGFR regression at 2 years and the clinical+medimp model
    r2 = lambda m: {(r.task, r.method, r.run, r.level): r.r2 for r in m.regression}  # noqa: E731
    assert r2(res.metrics) and r2(res.metrics) == pytest.approx(r2(base.metrics), abs=1e-12)
    # the latest exam before 2 years is M12, never M24
    assert base.metrics.records and ("clinical_only", None, "patient_latest", "logistic") in after


def test_a_graft_lost_without_a_date_is_positive_until_follow_up_ends(eval_cohort,
                                                                       tmp_path) -> None:
    cohort = tmp_path / "undated"
    shutil.copytree(eval_cohort, cohort)
    pats = pd.read_csv(cohort / "patients.csv", dtype={"patient_id": str})
    a, b, c = pats.index[:3]
    # A: lost, no date, follow-up ended at 500 days: lost before 2, 3 and 4 years
    pats.loc[a, ["graft_loss", "graft_loss_days", "followup_days"]] = [1, np.nan, 500.0]
    pats.loc[a, ["egfr_y2", "egfr_y3", "egfr_y4"]] = np.nan
    # B: lost, no date, followed for 1500 days, eGFR 60 at 2 years: good at 2 years, unknown
    # later (the loss may have come before or after 3 years)
    pats.loc[b, ["graft_loss", "graft_loss_days", "followup_days"]] = [1, np.nan, 1500.0]
    pats.loc[b, ["egfr_y2", "egfr_y3", "egfr_y4"]] = [60.0, np.nan, np.nan]
    # C: not lost, followed for 500 days only: unknown at 2 years, follow-up too short
    pats.loc[c, ["graft_loss", "graft_loss_days", "followup_days"]] = [0, np.nan, 500.0]
    pats.loc[c, ["egfr_y2", "egfr_y3", "egfr_y4"]] = np.nan
    pats.to_csv(cohort / "patients.csv", index=False)
    ids = pats["patient_id"]
    for k in (2, 3, 4):
        lab = make_labels(cohort, k).set_index("patient_id")
        assert lab.loc[ids[a], "label"] == 1 and lab.loc[ids[a], "reason"] == "graft_loss_undated"
        assert lab.loc[ids[c], "unknown_reason"] == "followup_short"
    lab2, lab3 = (make_labels(cohort, k).set_index("patient_id") for k in (2, 3))
    assert lab2.loc[ids[b], "label"] == 0 and lab2.loc[ids[b], "reason"] == "egfr"
    assert not lab3.loc[ids[b], "known"]
    assert lab3.loc[ids[b], "unknown_reason"] == "graft_loss_undated"
    # one rule for the survival tables: the loss at the end of follow-up, in both modes
    for event in ("graft_loss", "poor_status"):
        surv = survival_table(cohort, event).set_index("patient_id")
        assert surv.loc[ids[a], "event"] == 1 and surv.loc[ids[a], "time_days"] == 500
    assert survival_table(cohort).set_index("patient_id").loc[ids[b], "time_days"] == 1500
    # and the header counts them by reason
    inp = load_inputs(Config(horizons=[2, 3]), cohort, {})
    t2, t3 = inp.counts
    assert t2.n_graft_loss_undated == 1 and t3.n_graft_loss_undated == 1
    assert t2.n_unknown_by_reason.get("followup_short", 0) >= 1
    assert t3.n_unknown_by_reason["graft_loss_undated"] == 1
    assert sum(t3.n_unknown_by_reason.values()) == t3.n_unknown


def test_no_exam_after_the_end_of_follow_up_of_a_graft_lost_without_a_date(eval_cohort,
                                                                          tmp_path) -> None:
    """The undated loss happened by the end of follow-up (the rule of the labels and of the
    survival table): an exam after that day may show the lost graft and is left out."""
    cohort = tmp_path / "undated_exam"
    shutil.copytree(eval_cohort, cohort)
    pats = pd.read_csv(cohort / "patients.csv", dtype={"patient_id": str})
    exams = pd.read_csv(cohort / "exams.csv", dtype={"patient_id": str})
    pid = pats.loc[0, "patient_id"]
    last = float(exams.loc[exams["patient_id"] == pid, "days_post_transplant"].max())
    pats.loc[0, ["graft_loss", "graft_loss_days", "followup_days"]] = [1, np.nan, last - 1]
    pats.to_csv(cohort / "patients.csv", index=False)
    inp = load_inputs(Config(horizons=[2]), cohort, {})
    cut = exam_cutoffs(inp.tables, 2)
    assert cut[pid] == last - 1
    emb = truth_embeddings(eval_cohort, 1.0, seed=0)
    kept = before_horizon(inp.tables, emb, 2)
    mine = kept[(kept["patient_id"] == pid) & (kept["level"] == "exam")]
    days = [inp.tables.exam_day(pid, e) for e in mine["exam"]]
    assert days and max(days) < last
