"""medimp.evaluate: frozen embeddings -> probes and baselines -> metrics with CIs.

``evaluate(cohort, {"medimp": run_dir, ...}, out_dir)`` is the one call; the pieces (labels,
probes, CV, scoring, intervals, baselines, survival, retrieval, the ``metrics.json`` schema)
are importable from their modules: ``config`` (the protocol), ``inputs`` (cohort, labels,
feature tables), ``run`` (the orchestration), ``result`` (records, tables, files written).
"""

from medimp.evaluate.config import EvalConfig
from medimp.evaluate.errors import EvaluationError
from medimp.evaluate.inputs import load_method
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
from medimp.evaluate.result import EvalResult
from medimp.evaluate.run import evaluate

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
    "load_method",
    "make_labels",
    "read_metrics",
    "register_probe",
    "survival_table",
    "task_name",
    "write_metrics",
]
