"""medimp.report: figures and one self-contained HTML page of an evaluation.

``write_report(eval_dir)`` turns the folder written by ``medimp.evaluate.evaluate`` into
``report.html``.
"""

from medimp.report.html import write_report

__all__ = ["write_report"]
