"""medimp.evaluate: frozen embeddings -> probes and baselines -> metrics with CIs.

``evaluate(cohort, {"medimp": run_dir, ...}, out_dir)`` is the one call; the pieces (labels,
probes, CV, bootstrap, baselines, survival, retrieval, the ``metrics.json`` schema) are
importable from their modules.
"""

from medimp.evaluate._cohort import EvaluationError
from medimp.evaluate.labels import make_labels, survival_table, task_name
from medimp.evaluate.metrics import MetricsFile, Record, read_metrics, write_metrics
from medimp.evaluate.probes import (
    KNNProbe,
    LogisticProbe,
    ProbeError,
    create_probe,
    list_probes,
    register_probe,
)
from medimp.evaluate.run import EvalConfig, EvalResult, evaluate

__all__ = [
    "EvalConfig",
    "EvalResult",
    "EvaluationError",
    "KNNProbe",
    "LogisticProbe",
    "MetricsFile",
    "ProbeError",
    "Record",
    "create_probe",
    "evaluate",
    "list_probes",
    "make_labels",
    "read_metrics",
    "register_probe",
    "survival_table",
    "task_name",
    "write_metrics",
]
