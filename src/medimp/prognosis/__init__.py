"""medimp.prognosis: fit a prognosis model once, keep it, validate it elsewhere and apply it.

``fit_prognosis(DEV, {"medimp": run_dir}, "model/")`` writes a model folder (no pickles:
JSON + safetensors, docs/prognosis.md); ``predict("model/", NEW)`` returns one row per patient
× model × task; ``evaluate_external`` tests the same fitted models on another cohort.
"""

from medimp.prognosis.fit import FitConfig, FittedModel, PrognosisError
from medimp.prognosis.run import PREDICTION_COLUMNS, fit_prognosis, predict

__all__ = ["PREDICTION_COLUMNS", "FitConfig", "FittedModel", "PrognosisError",
           "fit_prognosis", "predict"]
