"""The report is one self-contained HTML file with the table and the figures."""

from __future__ import annotations

import re

from medimp.report import write_report


def test_report_is_self_contained(eval_dir, tmp_path) -> None:
    path = write_report(eval_dir, tmp_path / "r.html")
    html = path.read_text(encoding="utf-8")
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert links and all(link.startswith("data:image/png;base64,") for link in links)
    assert "<link" not in html.lower() and "<script" not in html.lower()
    assert "url(" not in html  # no external CSS resources either


def test_report_contents(eval_dir) -> None:
    html = write_report(eval_dir).read_text(encoding="utf-8")
    assert (eval_dir / "report.html").is_file()
    for section in ("Cohort", "Results: methods × tasks", "ROC curves", "Training curves",
                    "Embedding map", "Examples", "Protocol", "Survival", "KM curves"):
        assert section in html, section
    # the headline table: one row per method, AUC with its CI
    for method in ("medimp", "random_init", "clinical_only", "oracle"):
        assert f"<th>{method}</th>" in html
    assert re.search(r"0\.\d{3} \[0\.\d{3}, [01]\.\d{3}\]", html)
    imgs = re.findall(r'alt="([^"]+)" src="data:image/png;base64,', html)
    assert {"task counts", "ROC curves", "training curves", "embedding map"} <= set(imgs)
    assert any(a.startswith("P000 ") for a in imgs)  # example volume slices
    assert "The kidney donor was" in html  # example prompts
    assert "Youden" in html  # the protocol in words


def test_report_survives_a_moved_cohort(eval_dir, tmp_path) -> None:
    import shutil

    from medimp.evaluate import read_metrics, write_metrics

    copy = tmp_path / "eval"
    shutil.copytree(eval_dir, copy)
    m = read_metrics(copy / "metrics.json")
    m.header.cohort = str(tmp_path / "gone")
    write_metrics(m, copy / "metrics.json")
    html = write_report(copy).read_text(encoding="utf-8")
    assert "Cohort not found" in html and "ROC curves" in html
