"""The report: one self-contained HTML page that answers first, on a real evaluation."""

from __future__ import annotations

import re

import pytest

from medimp.evaluate import read_metrics
from medimp.report import write_report

SECTIONS = ("summary", "prediction", "added", "results", "calibration", "decision", "risks",
            "survival", "external", "flow", "protocol", "limitations", "appendix", "tripod")


@pytest.fixture(scope="module")
def page(eval_dir) -> str:
    return write_report(eval_dir).read_text(encoding="utf-8")


def _section(page: str, name: str) -> str:
    m = re.search(rf'<section id="{name}"[^>]*>(.*?)</section>', page, flags=re.S)
    assert m, name
    return m.group(1)


def test_report_is_self_contained(eval_dir, tmp_path) -> None:
    path = write_report(eval_dir, tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert "<link" not in html.lower() and "<script" not in html.lower()
    assert "url(" not in html  # no external CSS resources either


def test_sections_in_order_answer_first_checklist_last(page) -> None:
    found = re.findall(r'<section id="([a-z]+)"', page)
    assert found == list(SECTIONS)


def test_summary_answers_the_question(eval_dir, page) -> None:
    m = read_metrics(eval_dir / "metrics.json")
    summary = _section(page, "summary")
    assert "Simulated cohort" in summary  # the fixture cohort has the simulator's truth
    assert "Time zero is the day of transplantation" in summary
    assert "M12 (day 365)" in summary  # the landmark: the last imaged exam of study.yaml
    for t in m.header.tasks:  # patients and events per class, from the header
        row = (f"<td>{t.horizon_years} years</td><td>{t.n_known}</td><td>{t.n_pos}</td>"
               f"<td>{t.n_graft_loss}</td><td>{t.n_known - t.n_pos}</td><td>{t.n_unknown}</td>")
        assert row in summary
    lines = re.findall(r"<li><b>At (\d) years:</b> (.*?)</li>", summary, flags=re.S)
    assert [int(k) for k, _ in lines] == m.header.horizons
    for _, text in lines:
        assert "clinical table" in text


def test_bottom_line_matches_the_comparison(eval_dir, page) -> None:
    """Each horizon's verdict is what the AUC comparison of clinical+medimp (the table plus
    the images) against the table says, and an undecided one names the smallest detectable
    difference."""
    m = read_metrics(eval_dir / "metrics.json")
    summary = _section(page, "summary")
    comps = [c for c in [*m.comparisons, *m.added_value] if c.level == "patient_mean"
             and c.auc_diff is not None and c.other == "clinical_only"]
    for t in m.header.tasks:
        [c] = [c for c in comps if c.task == t.task and c.method == "clinical+medimp"]
        line = re.search(rf"<b>At {t.horizon_years} years:</b> (.*?)</li>", summary,
                         flags=re.S).group(1)
        assert f"{c.auc_diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" in line
        assert "adding the images" in line
        verdict = c.verdict or ("better" if c.ci_low > 0 else "worse" if c.ci_high < 0 else
                                "not decided")  # a comparison without a verdict: its CI
        if verdict.startswith("not decided"):  # Holm-adjusted, or one pretraining run
            assert line.startswith("Cannot tell")
            assert f"below {c.min_detectable_diff:.2f}" in line
        else:
            assert f"does {verdict} than the clinical table" in line


def test_prediction_defined(eval_dir, page) -> None:
    text = _section(page, "prediction")
    # each method named is one that was evaluated, and every evaluated one is named
    methods = re.search(r"<b>Methods\.</b><ul>(.*?)</ul>", text, flags=re.S).group(1)
    named = re.findall(r"<li><code>([^<]+)</code>:", methods)
    assert named == list(read_metrics(eval_dir / "metrics.json").header.methods)
    # the clinical predictors by name, split by when they are known
    assert re.search(r"Known at transplantation: donor_age, donor_type, recipient_age, "
                     r"recipient_sex\. Measured at each exam: egfr, creatinine_mg_dl, "
                     r"creatinine_cv\.", text)
    assert "D15 (day 15), D30 (day 30), M3 (day 91), M12 (day 365)" in text
    for what in ("<code>medimp</code>", "<code>random_init</code>", "Unknown outcomes",
                 "Deaths", "Missing exams", "Evaluated patients in pretraining"):
        assert what in text


def test_main_tables_carry_no_internal_parameters(page) -> None:
    main = page[:page.index('<section id="appendix"')]
    for internal in ("run None", ">None<", "pca_components", "penalizer", "auc_ci_low"):
        assert internal not in main, internal
    results = _section(page, "results")
    assert "<details><summary>Each pretraining run" not in results  # one run per method here
    assert "bootstrap" not in main


def test_captions_name_the_interval_computed(eval_dir, page) -> None:
    m = read_metrics(eval_dir / "metrics.json")
    assert "corrected resampled t" in m.header.protocol["metrics"]
    results = _section(page, "results")
    assert "95% CI (corrected resampled t)" in results
    assert "(corrected resampled t)" in _section(page, "survival")


def test_absolute_risks_and_calibration(page) -> None:
    risks = _section(page, "risks")
    assert "Thresholds: 10%, 25%, 50%." in risks
    for col in ("sensitivity", "specificity", "PPV", "NPV", "observed poor status"):
        assert f"<th>{col}</th>" in risks
    assert 'alt="calibration"' in _section(page, "calibration")
    assert 'alt="decision curves"' in _section(page, "decision")
    # the evaluation wrote its calibration and decision-curve tables: the page says it used them
    assert "from the evaluation&#39;s calibration table" in page
    assert "from the evaluation&#39;s decision-curve table" in page


def test_survival_first_with_numbers_at_risk(eval_dir, page) -> None:
    import pandas as pd

    surv = _section(page, "survival")
    assert "<th>Harrell&#39;s C [95% CI]</th>" in surv and 'alt="KM curves"' in surv
    at_risk = surv[surv.index("Numbers at risk"):]
    km = pd.read_parquet(eval_dir / "survival.parquet")
    for method, sub in km.groupby("method"):
        high = sub[sub["high_risk"] == 1]
        # at year 0 every patient of the group is at risk; at 1 year those followed past it
        n1 = int((high["time_days"] >= 365.25).sum())
        assert f"<td>{method}</td><td>high risk</td><td>{len(high)}</td><td>{n1}</td>" in at_risk


def test_cohort_flow_adds_up(eval_dir, page) -> None:
    m = read_metrics(eval_dir / "metrics.json")
    flow = _section(page, "flow")
    for t in m.header.tasks:
        assert t.n_known + t.n_unknown == m.header.n_patients
        item = re.search(rf"<b>{t.horizon_years} years</b>: (.*?)</li>", flow, flags=re.S)
        nums = re.search(r"left out as unknown \((\d+) followed for less than \d years, (\d+) "
                         r"followed long enough", item.group(1))
        if t.n_unknown:
            assert int(nums.group(1)) + int(nums.group(2)) == t.n_unknown


def test_appendix_keeps_the_encoder_checks(page) -> None:
    app = _section(page, "appendix")
    imgs = re.findall(r'alt="([^"]+)" src="data:image/png;base64,', app)
    assert {"training curves", "embedding map"} <= set(imgs)
    assert any(a.startswith("P000 ") for a in imgs)  # example volume slices
    assert "The kidney donor was" in app  # example prompts


def test_tripod_checklist_says_where_or_not(page) -> None:
    rows = re.findall(r"<tr><td>([A-Za-z ]+)</td><td>(.*?)</td><td[^>]*>(.*?)</td><td>(.*?)</td>",
                      _section(page, "tripod"))
    assert len(rows) >= 27
    for _, _, where, note in rows:
        assert where != "–" or note  # covered somewhere, or says why not
    by_topic = {topic: where for _, topic, where, _ in rows}
    assert by_topic["Model performance: calibration"] == "Calibration"
    assert by_topic["Model performance: clinical utility (decision curves)"] == "Decision curves"
    assert by_topic["Fairness: performance in subgroups"] == "–"
    assert by_topic["External validation"] == "–"  # no external cohort in this evaluation


def test_report_survives_a_moved_cohort(eval_dir, tmp_path) -> None:
    import shutil

    from medimp.evaluate import write_metrics

    copy = tmp_path / "eval"
    shutil.copytree(eval_dir, copy)
    m = read_metrics(copy / "metrics.json")
    m.header.cohort = str(tmp_path / "gone")
    write_metrics(m, copy / "metrics.json")
    # an evaluation from before calibration.parquet / decision_curves.parquet existed
    (copy / "calibration.parquet").unlink()
    (copy / "decision_curves.parquet").unlink()
    html = write_report(copy).read_text(encoding="utf-8")
    assert "Cohort not found" in html and "ROC curves" in html
    assert "from the out-of-fold predictions, in fixed predicted-risk groups" in html
    assert 'alt="decision curves"' in html and "each patient&#39;s risk averaged" in html


def test_added_value_table_leads_with_the_reference_combined_model(eval_dir, page) -> None:
    m = read_metrics(eval_dir / "metrics.json")
    added = _section(page, "added")
    main = added[:added.index("<details>")]
    assert set(re.findall(r"<td>(clinical\+[a-z_]+)", main)) == {"clinical+medimp"}
    for c in m.added_value:
        if c.method == "clinical+medimp" and c.level == "patient_mean":
            diff = c.auc_diff if c.auc_diff is not None else (
                c.r2_diff if c.r2_diff is not None else c.brier_diff)
            assert f"{diff:+.3f} [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" in main
    assert "clinical+random_init" in added[added.index("<details>"):]  # folded away


def test_calibration_and_continuous_figures_are_the_recorded_ones(eval_dir, page) -> None:
    m = read_metrics(eval_dir / "metrics.json")
    [rec] = [r for r in m.records if r.task == "status_y2" and r.method == "clinical_only"
             and r.run is None and r.level == "patient_mean" and r.probe == "logistic"]
    assert rec.calibration_slope is not None
    assert (f"{rec.calibration_slope:.3f} [{rec.calibration_slope_ci_low:.3f}, "
            f"{rec.calibration_slope_ci_high:.3f}]") in _section(page, "calibration")
    [reg] = [r for r in m.regression if r.task == "egfr_y2" and r.method == "clinical_only"
             and r.run is None and r.level == "patient_mean"]
    assert f"{reg.r2:.3f} [{reg.r2_ci_low:.3f}, {reg.r2_ci_high:.3f}]" in _section(page,
                                                                                 "results")


def _old_metrics_without_intervals(eval_dir, folder) -> list[dict]:
    """A copy of the evaluation whose metrics.json looks written before verdicts existed (no
    ``verdict``, ``p_holm`` or added-value answers) and whose comparisons lack their CI
    (``ci_low`` absent, ``ci_high`` null); returns its headline comparisons."""
    import json
    import shutil

    shutil.copytree(eval_dir, folder)
    data = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    for key in ("comparisons", "regression_comparisons", "added_value"):
        for c in data[key]:
            for gone in ("verdict", "p_holm", "ci_low"):
                c.pop(gone, None)
            c["ci_high"] = None
    data.pop("added_value_answers")
    (folder / "metrics.json").write_text(json.dumps(data), encoding="utf-8")
    return [c for c in data["comparisons"] if (c["level"], c["probe"]) ==
            ("patient_mean", "logistic") and c["method"] == data["header"]["reference_method"]]


def test_old_metrics_without_verdicts_or_intervals_say_not_decided(eval_dir, tmp_path) -> None:
    """Without a verdict the report decides from the CI; without a CI either, every comparison
    is "not decided" (never "better" or "worse") and the interval cells say it is missing."""
    from medimp.report.html import NO_CI_VERDICT

    comps = _old_metrics_without_intervals(eval_dir, tmp_path / "eval")
    assert comps
    html = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    results = _section(html, "results")
    rows = re.findall(r"<tr>(.*?)</tr>", results[results.index("min. detectable ΔAUC"):],
                      flags=re.S)
    verdicts = [re.findall(r"<td>(.*?)</td>", r, flags=re.S)[-1] for r in rows[:len(comps)]]
    assert verdicts == [NO_CI_VERDICT] * len(comps)
    for c in comps:
        assert f"<td>{c['auc_diff']:+.3f} [no CI]</td>" in results
    assert "nothing is decided" in results and "better than" not in results
    added = _section(html, "added")
    assert "[no 95% CI in metrics.json]" in added
    assert "better than the table" not in added and "worse than the table" not in added


def test_unreadable_metrics_names_the_file(eval_dir, tmp_path) -> None:
    """A metrics.json that is not one is an EvaluationError naming the file and the field."""
    from medimp.evaluate.errors import EvaluationError

    path = tmp_path / "metrics.json"
    path.write_text((eval_dir / "metrics.json").read_text(encoding="utf-8")
                    .replace('"p_value"', '"p_val"', 1), encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"metrics\.json: not a metrics\.json medimp can "
                       r"read \(comparisons\.0\.p_value: Field required.*medimp evaluate"):
        read_metrics(path)
